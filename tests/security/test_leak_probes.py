"""Defect 6: 0 leaks across 20 probe paths. Each path runs the real CLI; stdout, stderr,
every byte of the state dir and the run's reports are searched for the secret in every
common encoding: raw, URL-quoted (quote and quote_plus), JSON-escaped, base64 at the three
alignments (standard and URL-safe), hex (lower and upper case), and the UTF-8 decodings
of a secret that holds an invalid byte."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from helpers.run import runbook_cli, write_runbook

SECRET = 'Zq9 p@ss/w"rd+Kx7'
LITERAL_DSN_PASSWORD = "p@ss word9!"
BAD_UTF8 = "Inv4lid\udcffSecret99"  # one byte (0xff) that is not UTF-8


def encodings(secret: str) -> set[str]:
    raw = secret.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "replace")
    forms = {text, quote(text, safe=""), quote_plus(text), json.dumps(text)[1:-1],
             json.dumps(text, ensure_ascii=False)[1:-1], raw.hex(), raw.hex().upper()}
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * pad + raw).decode()
            start, end = -(-8 * pad // 6), (8 * pad + 8 * len(raw)) // 6
            forms.add(encoded[start:end])
    if "\ufffd" in text:  # what is left around the invalid byte must not show either
        forms |= {part for part in text.split("\ufffd") if len(part) >= 4}
    return {f for f in forms if len(f) >= 4}


def step(body: str) -> str:
    return "name: probe\nsteps:\n" + body


ECHO = "  - name: p\n    command: [sh, -c, '{sh}', sh, \"{{{{ secrets.pw }}}}\"]\n"
INPUT_RB = ("name: probe\ninputs:\n  token: {{type: {type}, secret: true{extra}}}\n"
            "steps:\n  - name: p\n    debug: {{msg: hi}}\n")

PROBES = {
    "argv echoed": step(ECHO.format(sh='echo "got $1"')),
    "stderr of a failed command": step(ECHO.format(sh='echo "bad $1" >&2; exit 3')
                                       + "    ignore_errors: true\n"),
    "urlencode filter": step("  - name: p\n    debug: {msg: \"{{ secrets.pw | urlencode }}\"}\n"),
    "to_json filter": step("  - name: p\n    debug: {msg: \"{{ {'a': secrets.pw} | to_json }}\"}\n"),
    "b64encode filter": step("  - name: p\n    debug: {msg: \"{{ secrets.pw | b64encode }}\"}\n"),
    "base64 output, alignment 0": step(ECHO.format(sh='printf %s "$1" | base64 -w0')),
    "base64 output, alignment 1": step(ECHO.format(sh='printf "a%s" "$1" | base64 -w0')),
    "base64 output, alignment 2": step(ECHO.format(sh='printf "ab%s" "$1" | base64 -w0')),
    "hex output": step(ECHO.format(sh='printf %s "$1" | od -An -tx1 | tr -d " \\n"')),
    "quoted-plus output": step(ECHO.format(
        sh='python3 -c "import sys,urllib.parse as u; print(u.quote_plus(sys.argv[1]))" "$1"')),
    "secret input of the wrong type": INPUT_RB.format(type="integer", extra=""),
    "secret input not in choices": INPUT_RB.format(type="string", extra=", choices: [a, b]"),
    "runbook var that fails to render": ("name: probe\nvars:\n  when_: \"{{ secrets.pw | "
                                         "to_datetime }}\"\nsteps:\n  - name: p\n    debug: "
                                         "{msg: \"{{ when_ }}\"}\n"),
    "step argument that fails to render": step("  - name: p\n    debug: {msg: \"{{ secrets.pw"
                                               " | to_datetime }}\"}\n"),
    "http.check invalid URL": step("  - name: p\n    http.check: {url: \"http://u:{{ secrets.pw"
                                   " }}@127.0.0.1:1/\"}\n    ignore_errors: true\n"),
    "http.check URL query": step("  - name: p\n    http.check: {url: \"http://127.0.0.1:1/?t={{ "
                                 "secrets.pw | urlencode }}\", timeout: 2}\n"
                                 "    ignore_errors: true\n"),
    "literal DSN password with @ and space": step(
        "  - name: p\n    command: [sh, -c, 'echo \"$1\"; exit 1', sh, \"postgresql://app:"
        + LITERAL_DSN_PASSWORD + "@db1/erp\"]\n    ignore_errors: true\n"),
    "secret with an invalid UTF-8 byte": step(ECHO.format(sh='echo "got $1"')),
    "json output of the argv": step(ECHO.format(sh='echo "$1"')),
    "inventory target that fails to render": step("  - name: p\n    target: t\n    debug: "
                                                  "{msg: hi}\n"),
}
SECRET_OF = {"literal DSN password with @ and space": LITERAL_DSN_PASSWORD,
             "secret with an invalid UTF-8 byte": BAD_UTF8}


def _inventory(name: str) -> str:
    text = "secrets:\n  pw: {env: PW}\n"
    if name == "inventory target that fails to render":
        text += "targets:\n  t: {when: \"{{ secrets.pw | to_datetime }}\"}\n"
    return text


def _outputs(tmp_path: Path, name: str, secret: str) -> list[tuple[str, bytes]]:
    write_runbook(tmp_path, PROBES[name])
    (tmp_path / "inv.yaml").write_text(_inventory(name))
    args = ["run", "runbook.yaml", "-i", "inv.yaml", "--run-id", "p", "--state-dir", "state"]
    if name.startswith("secret input"):
        args += ["-e", f"token={secret}"]
    if name == "json output of the argv":
        args += ["--output", "json"]
    done = runbook_cli(*args, cwd=tmp_path, env={"PW": secret})
    assert done.rc != 70, done.output
    found = [("stdout", done.stdout.encode("utf-8", "surrogateescape")),
             ("stderr", done.stderr.encode("utf-8", "surrogateescape"))]
    state = tmp_path / "state"
    found += [(str(p), p.read_bytes()) for p in sorted(state.rglob("*")) if p.is_file()]
    if (state / "runs" / "p" / "journal.jsonl").exists():
        for fmt in ("md", "json"):
            report = runbook_cli("report", "p", "--format", fmt, "--state-dir", "state",
                                 cwd=tmp_path)
            found.append((f"report {fmt}", report.output.encode("utf-8", "surrogateescape")))
    return found


@pytest.mark.parametrize("name", sorted(PROBES))
def test_no_encoding_of_the_secret_leaks(tmp_path, name):
    secret = SECRET_OF.get(name, SECRET)
    forms = encodings(secret)
    if secret == LITERAL_DSN_PASSWORD:
        forms |= {"ss word9"}  # no part of it either
    if name == "http.check invalid URL":
        forms |= {"Zq9 p@ss"}  # what http.client quotes as the "port"
    leaks = [(where, form) for where, data in _outputs(tmp_path, name, secret) for form in forms
             if form.encode("utf-8", "surrogateescape") in data]
    assert leaks == []
