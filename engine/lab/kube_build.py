"""Build (once) and cache kube-apiserver and kube-controller-manager v1.20.2.

No registry ships these binaries, so they are built from Debian bookworm's
``kubernetes`` source package with Debian's Go toolchain (see LAB.md,
"Kubernetes"). The first run on a machine takes 12-25 minutes on 2 cores
(measured; CPU-bound, so it depends on load) and ~2.4 GB of scratch disk;
every later run finds the binaries in the cache and returns at once.

Stdlib only, so CI can run it before anything else is installed:
``python -m engine.lab.kube_build`` builds or reuses the cache and prints the
directory holding the binaries (``.ci/run`` calls it before the tests).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

KUBE_VERSION = "v1.20.2"
BINARIES = ("kube-apiserver", "kube-controller-manager")

# Build-time packages. dpkg-dev gives dpkg-source; the reflect2 package
# replaces the vendored copy that crashes Go >= 1.18 binaries.
BUILD_PACKAGES = (
    "golang-go",
    "etcd-server",
    "rsync",
    "golang-github-modern-go-reflect2-dev",
    "dpkg-dev",
)
RUNTIME_PACKAGES = ("etcd-server",)

REFLECT2_SOURCE = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
TAIL_LINES = 15
HEARTBEAT_SECONDS = 60

Progress = Callable[[str], None]


class KubeBuildError(RuntimeError):
    """The build could not finish; the message is one line, with the tail of
    the failing command's output when there is one."""


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where the binaries of KUBE_VERSION live: ``$RUNBOOK_KUBE_CACHE/<ver>``
    or ``~/.cache/runbook-engine/kubernetes/<ver>``."""
    root = os.environ.get("RUNBOOK_KUBE_CACHE")
    base = Path(root) if root else Path.home() / ".cache/runbook-engine/kubernetes"
    return base / KUBE_VERSION


def cached_binaries_ok(cache_dir: Path) -> bool:
    """True when both binaries exist in ``cache_dir`` and answer ``--version``."""
    for name in BINARIES:
        path = cache_dir / name
        if not path.is_file():
            return False
        try:
            done = subprocess.run([str(path), "--version"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            return False
    return True


def ensure_binaries(cache_dir: Path | None = None, progress: Progress = print) -> Path:
    """Return a directory holding ``kube-apiserver`` and
    ``kube-controller-manager`` v1.20.2, building them first if needed.

    Needs root (apt-get) and ~2.4 GB free in the temp dir the first time.
    Raises KubeBuildError on any failure; a failed build leaves the cache as
    it was (binaries are moved in only at the very end).
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if cached_binaries_ok(cache_dir):
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache_dir):
        # Another process may have finished the build while we waited.
        if cached_binaries_ok(cache_dir):
            return cache_dir
        _Builder(cache_dir, progress).run()
    return cache_dir


def ensure_runtime_packages(progress: Progress = print) -> None:
    """Install what starting a cluster needs (etcd) when it is missing."""
    if shutil.which("etcd"):
        return
    _install_missing(RUNTIME_PACKAGES, progress, _Clock())


# --------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------


class _Clock:
    """Elapsed time since the build began, for progress lines."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:6.1f}s"


class _Builder:
    """One build attempt: packages, source, patch, make, install, clean up."""

    def __init__(self, cache_dir: Path, progress: Progress) -> None:
        self.cache_dir = cache_dir
        self.progress = progress
        self.clock = _Clock()

    def say(self, message: str) -> None:
        self.progress(f"[kube-build {self.clock}] {message}")

    def run(self) -> None:
        self.say(f"building Kubernetes {KUBE_VERSION} (first run only: 12-25 min on 2 busy cores)")
        _install_missing(BUILD_PACKAGES, self.progress, self.clock)
        work = Path(tempfile.mkdtemp(prefix="kube-build-"))
        try:
            tree = self.fetch_source(work)
            self.replace_reflect2(tree)
            self.make(tree, work)
            self.install(tree)
        finally:
            self.say(f"removing build tree {work}")
            shutil.rmtree(work, ignore_errors=True)
        self.say(f"done: {self.cache_dir}")

    def fetch_source(self, work: Path) -> Path:
        """Download and unpack the ``kubernetes`` source package; return its tree."""
        self.say("downloading the kubernetes source package (apt-get source)")
        apt_opts = _private_apt_options(work)
        _run(["apt-get", "update", *apt_opts], cwd=work)
        download = work / "download"
        download.mkdir()
        _run(["apt-get", "source", "--download-only", *apt_opts, "kubernetes"], cwd=download)
        dscs = sorted(download.glob("kubernetes_*.dsc"))
        if not dscs:
            raise KubeBuildError(f"apt-get source left no kubernetes_*.dsc in {download}")
        self.say(f"unpacking {dscs[-1].name}")
        tree = work / "src"
        _run(["dpkg-source", "-x", str(dscs[-1]), str(tree)], cwd=download)
        shutil.rmtree(download)
        return tree

    def replace_reflect2(self, tree: Path) -> None:
        """Swap vendored reflect2 1.0.1 (``fatal error: fault`` under Go >= 1.18)
        for Debian's 1.0.2, without its tests."""
        target = tree / "vendor/github.com/modern-go/reflect2"
        if not REFLECT2_SOURCE.is_dir():
            raise KubeBuildError(f"{REFLECT2_SOURCE} missing; is golang-github-modern-go-reflect2-dev installed?")
        self.say("replacing vendor/github.com/modern-go/reflect2 with Debian's 1.0.2")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(REFLECT2_SOURCE, target, ignore=shutil.ignore_patterns("*_test.go"))

    def make(self, tree: Path, work: Path) -> None:
        """Run the tree's own make (it runs the code generators first; a plain
        ``go build`` fails)."""
        self.say("make WHAT='cmd/kube-apiserver cmd/kube-controller-manager' (the long part)")
        env = dict(
            os.environ,
            GOFLAGS="",
            GOPROXY="off",
            CGO_ENABLED="0",
            KUBE_BUILD_PLATFORMS="linux/amd64",
            KUBE_GIT_VERSION=KUBE_VERSION,
            KUBE_GIT_TREE_STATE="clean",
            GOLDFLAGS="-s -w",
            # Keep Go's build cache in the build tree so cleanup removes it.
            GOCACHE=str(work / "gocache"),
        )
        what = "WHAT=" + " ".join(f"cmd/{name}" for name in BINARIES)
        _run(["make", what], cwd=tree, env=env, heartbeat=lambda: self.say("make still running"))

    def install(self, tree: Path) -> None:
        """Copy the binaries next to the cache dir, then rename into place."""
        staging = Path(tempfile.mkdtemp(prefix=f".{KUBE_VERSION}-", dir=self.cache_dir.parent))
        staging.chmod(0o755)  # mkdtemp makes it 0700; other users may run the binaries
        try:
            for name in BINARIES:
                built = _find_built_binary(tree, name)
                shutil.copy2(built, staging / name)
                os.chmod(staging / name, 0o755)
            if self.cache_dir.exists():  # a half or broken earlier cache
                shutil.rmtree(self.cache_dir)
            os.rename(staging, self.cache_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not cached_binaries_ok(self.cache_dir):
            raise KubeBuildError(f"built binaries in {self.cache_dir} do not run --version")


def _find_built_binary(tree: Path, name: str) -> Path:
    for candidate in (
        tree / "_output/local/bin/linux/amd64" / name,
        tree / "_output/bin" / name,
    ):
        if candidate.is_file():
            return candidate
    found = sorted((tree / "_output").rglob(name))
    files = [p for p in found if p.is_file()]
    if not files:
        raise KubeBuildError(f"make finished but no {name} under {tree / '_output'}")
    return files[0]


# --------------------------------------------------------------------------
# apt helpers
# --------------------------------------------------------------------------


def _install_missing(packages: Sequence[str], progress: Progress, clock: _Clock) -> None:
    missing = [p for p in packages if not _is_installed(p)]
    if not missing:
        return
    progress(f"[kube-build {clock}] apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update"], env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


def _is_installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return done.returncode == 0 and done.stdout.strip().endswith("ok installed")


def _private_apt_options(work: Path) -> list[str]:
    """apt options that read only a private ``deb-src`` list, so the
    machine's own apt state is left untouched."""
    lists = work / "apt-lists"
    (lists / "partial").mkdir(parents=True)
    source_list = work / "sources.list"
    source_list.write_text("".join(_deb_src_lines()))
    return [
        "-o", f"Dir::Etc::SourceList={source_list}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={lists}",
    ]


def _deb_src_lines() -> list[str]:
    """One ``deb-src`` line per mirror/suite found in the deb822 sources."""
    lines = []
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        for stanza in _parse_deb822(path.read_text()):
            signed = stanza.get("signed-by", "")
            opts = f"[signed-by={signed}] " if signed and "\n" not in signed else ""
            components = stanza.get("components", "main")
            for uri in stanza.get("uris", "").split():
                for suite in stanza.get("suites", "").split():
                    lines.append(f"deb-src {opts}{uri} {suite} {components}\n")
    if not lines:
        raise KubeBuildError(f"no apt mirror found in {SOURCES_DIR}/*.sources")
    return lines


def _parse_deb822(text: str) -> list[dict[str, str]]:
    """Minimal deb822 reader: stanzas split by blank lines, comments skipped,
    keys lower-cased; continuation lines are joined with newlines."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif raw[0] in " \t" and key:
            current[key] += "\n" + raw.strip()
        elif ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


# --------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------


def _run(
    cmd: Sequence[str],
    cwd: Path | None = None,
    env: dict | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> None:
    """Run a command, output to a temp log; call ``heartbeat`` every minute
    while it runs; on failure raise KubeBuildError with the output's tail."""
    with tempfile.TemporaryFile(mode="w+", errors="replace") as log:
        try:
            proc = subprocess.Popen(
                list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as exc:
            raise KubeBuildError(f"cannot run {cmd[0]}: {exc}") from exc
        code = _wait_with_heartbeat(proc, heartbeat)
        if code == 0:
            return
        log.seek(0)
        tail = " | ".join(line.strip() for line in log.read().splitlines()[-TAIL_LINES:])
    raise KubeBuildError(f"{' '.join(cmd[:3])} ... failed (exit {code}): {tail}")


def _wait_with_heartbeat(proc: subprocess.Popen, heartbeat: Callable[[], None] | None) -> int:
    try:
        while True:
            try:
                return proc.wait(timeout=HEARTBEAT_SECONDS)
            except subprocess.TimeoutExpired:
                if heartbeat:
                    heartbeat()
    except BaseException:  # e.g. Ctrl-C: do not leave make and its go children running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


@contextlib.contextmanager
def _build_lock(cache_dir: Path) -> Iterator[None]:
    """Serialise builds of one version across processes."""
    lock_path = cache_dir.parent / f".{cache_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    """Everything a machine needs to start the lab cluster: etcd installed, the binaries
    built or found in the cache. Prints the binaries' directory."""
    del argv  # no options yet
    try:
        ensure_runtime_packages()
        path = ensure_binaries()
    except KubeBuildError as exc:
        print(f"kube-build: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
