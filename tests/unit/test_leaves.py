"""The leaves that own one shared job each: masking, sha256 and sumfiles, JSON coercion,
UTC timestamps."""
from __future__ import annotations

import json
import re
import subprocess
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from engine.checksums import (check_sumfile, digest_for, parse_sums, sha256_bytes, sha256_file,
                              sha256_text, sumfile_path, write_sumfile)
from engine.jsonvalues import json_safe
from engine.secrets import MASK, Redactor, mask_text, sanitize
from engine.timestamps import age, epoch, now_ts, parse_ts, seconds_between


# --------------------------------------------------------------------------- secrets

def test_a_password_holding_an_at_sign_is_masked_whole_inside_text():
    assert Redactor().mask("dial postgresql://erp:p@ss@db/erp now") == \
        f"dial postgresql://erp:{MASK}@db/erp now"


def test_key_value_passwords_with_escaped_or_unterminated_quotes_are_masked():
    assert mask_text(r"host=db password='it\'s secret' user=x") == f"host=db password={MASK} user=x"
    assert mask_text("password='unterminated user=x") == f"password={MASK} user=x"


def test_sanitize_masks_urls_and_the_dsn_password_everywhere():
    dsn = "host=db password=hunter22"
    assert sanitize("failed: hunter22 at postgresql://a:b@h/d", dsn) == \
        f"failed: {MASK} at postgresql://a:{MASK}@h/d"


# --------------------------------------------------------------------------- checksums

def test_digests_of_bytes_text_and_files_agree(tmp_path):
    path = tmp_path / "f"
    path.write_bytes("é".encode())
    assert sha256_file(path) == sha256_bytes("é".encode()) == sha256_text("é")


def test_a_sumfile_is_what_sha256sum_checks(tmp_path):
    dump = tmp_path / "d"
    (dump / "sub").mkdir(parents=True)
    (dump / "a").write_text("1")
    (dump / "sub" / "b").write_text("2")
    digest, size = write_sumfile(dump)
    assert size == 2 and re.fullmatch(r"[0-9a-f]{64}", digest)
    assert subprocess.run(["sha256sum", "-c", sumfile_path(dump).name], cwd=tmp_path,
                          capture_output=True).returncode == 0
    assert check_sumfile(dump).mismatch is None and check_sumfile(dump).digest == digest
    (dump / "a").write_text("changed")
    assert check_sumfile(dump).mismatch.startswith("d/a: expected ")


def test_sumfile_lines_are_read_in_text_and_binary_mode():
    hex64 = "ab" * 32
    sums = parse_sums(f"{hex64.upper()}  backup.dump\n{'cd' * 32} *other.bin\nnot a line\n")
    assert sums == [(hex64, "backup.dump"), ("cd" * 32, "other.bin")]
    assert digest_for(sums, "/srv/backup.dump") == hex64
    assert digest_for(sums, "missing") is None
    assert digest_for(sums[:1], "missing") == hex64


# --------------------------------------------------------------------------- JSON

def test_json_safe_keeps_the_meaning_of_database_and_python_values():
    value = {1: Decimal("2"), "f": Decimal("1.5"), "nan": float("nan"), "d": date(2024, 1, 2),
             "t": datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc), "i": timedelta(minutes=1),
             "b": b"\x00\xff", "s": {3}, "o": object}
    safe = json_safe(value)
    json.dumps(safe, allow_nan=False)
    assert safe["1"] == 2 and safe["f"] == 1.5 and safe["nan"] == "nan"
    assert safe["d"] == "2024-01-02" and safe["t"] == "2024-01-02T03:04:00+00:00"
    assert safe["i"] == 60.0 and safe["b"] == "00ff" and safe["s"] == [3]
    assert safe["o"] == str(object)


# --------------------------------------------------------------------------- timestamps

def test_timestamps_are_utc_milliseconds_and_parse_back():
    ts = now_ts()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
    assert parse_ts(ts).tzinfo is not None and 0 <= age(ts) < 5
    assert seconds_between("2024-01-01T00:00:00.000Z", "2024-01-01T00:01:30.500Z") == 90.5
    assert epoch("1970-01-01T00:00:10Z") == epoch("1970-01-01T00:00:10") == 10.0
