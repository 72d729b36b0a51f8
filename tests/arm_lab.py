"""An emulated Raspberry Pi 4 in the test lab: the real agent on Debian bullseye's arm64 userland.

`make arm-lab` (`python -m tests.arm_lab start`) and tests/integration/test_arm_lab.py use it.

1. The root. debootstrap builds Debian bullseye for arm64 (minbase plus python3 and python3-venv:
   the Python 3.9 that Raspberry Pi OS bullseye ships); qemu-user-static runs its arm64 code
   through binfmt_misc. It is built once (about 3 minutes here) into a zstd tarball in the cache
   and restored from it in seconds.
2. The install. The agent's wheel and its dependencies' aarch64 wheels are fetched on the host
   with `pip download --only-binary=:all: --platform manylinux_2_31_aarch64 ...` (the code that
   `edgeopt ssh bootstrap --offline` uses); inside the root, pip installs them into a venv from
   that folder alone (--no-index): nothing is built there, and there is no compiler. The venv of
   one dependency set is cached too; the agent's own wheel is reinstalled on every start.
3. The board. The agent runs chrooted in a private mount namespace where /proc/cpuinfo is a
   captured Raspberry Pi 4's (tests/boardfacts/data/boards/pi4) and /sys is that board's captured
   tree plus the CPU lists its cpuinfo implies, so ONNX Runtime and the agent's probes see four
   Cortex-A72 cores. A network namespace gives it an address of its own (10.77.<subnet>.2) where
   the machine allows; else it listens on a loopback port.

What it cannot fake, it reports as it is: the CPUs the agent may run on and the memory are this
machine's, and its code is emulated (the agent reads the kernel's architecture and reports
`emulation`, which flags every benchmark made there EMULATED).

Everything runs as root (debootstrap, chroot, mounts, namespaces); `unavailable_reason()` says
why the lab cannot run here.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeopt.host.transport.ssh.bootstrap import Inspection, build_wheel, download_wheels
from tests import netns
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]
PI4 = REPO / "tests" / "boardfacts" / "data" / "boards" / "pi4"
SUITE = "bullseye"
"""Debian 11: Python 3.9.2 and glibc 2.31, as Raspberry Pi OS bullseye."""
BOARD = Inspection(arch="aarch64", glibc=(2, 31), python=(3, 9, 2), venv=True,
                   free_bytes=None, systemd=False)  # fmt: skip
PACKAGES = ("python3", "python3-venv", "openssh-server")
"""What a Raspberry Pi OS board has that the agent and `edgeopt ssh` use."""
VENV = "/opt/edgeopt-agent"
"""The agent's venv inside the root."""
WHEELS = "/opt/wheels"
MARKER = ".edgeopt-arm-lab.json"
"""In a lab's run folder: `stop` removes only a folder that holds it."""
THROTTLE_FILE = "sys/devices/platform/soc/soc:firmware/get_throttled"
"""Under the board view: the Pi 4's firmware throttle flags (boardfacts/thermal.py)."""
STORE = "/var/lib/edgeopt-agent"
PORT = 50051
START_TIMEOUT = 180.0
"""Seconds the emulated agent may take to serve (about 10 here)."""
COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "clang++", "ld", "as", "make")
SEEDS = frozenset({"pip", "setuptools", "pkg-resources", "pkg_resources"})
"""What `python3 -m venv` puts into every venv (Debian's ensurepip): not the agent's."""

Log = Callable[[str], None]


class LabError(RuntimeError):
    """The lab cannot be built or started; the message says why and what to do."""


def cache_dir() -> Path:
    """$EDGEOPT_ARM_LAB_CACHE, else ~/.cache/edgeopt/arm-lab."""
    env = os.environ.get("EDGEOPT_ARM_LAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgeopt" / "arm-lab"


def base_tarball() -> Path:
    """The cached arm64 root (debootstrap's output, packed), named by its package list."""
    tag = hashlib.sha256(",".join(PACKAGES).encode()).hexdigest()[:8]
    return cache_dir() / f"debian-{SUITE}-arm64-{tag}.tar.zst"


def native() -> bool:
    """Whether this machine runs arm64 code itself (no emulator needed)."""
    return platform.machine() in {"aarch64", "arm64"}


def _run(cmd: list[str], what: str, **kwargs: object) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-1500:]
        raise LabError(f"{what} failed (exit {done.returncode}): {tail}")
    return str(done.stdout)


def unavailable_reason() -> str | None:
    """Why the lab cannot run on this machine, or None."""
    if sys.platform != "linux":
        return "the ARM lab needs Linux (chroot, mount namespaces, binfmt_misc)"
    if os.geteuid() != 0:
        return "the ARM lab needs root (debootstrap, chroot, mounts)"
    tools = ["debootstrap", "zstd", "unshare", "chroot", "tar"]
    tools += [] if native() else ["qemu-aarch64-static", "update-binfmts"]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return (
            f"missing {', '.join(missing)}: `make system-packages` installs Debian's "
            "qemu-user-static, debootstrap, binfmt-support and zstd"
        )
    if not native() and not Path("/proc/sys/kernel/arch").exists():
        return (
            f"this kernel ({platform.release()}) has no /proc/sys/kernel/arch (Linux 6.1 and "
            "newer): the emulated agent could not tell that it is emulated"
        )
    if not native():
        try:
            enable_binfmt()
        except LabError as exc:
            return str(exc)
    return None


def enable_binfmt() -> None:
    """Make the kernel run aarch64 programs through qemu (mounting binfmt_misc if needed)."""
    folder = Path("/proc/sys/fs/binfmt_misc")
    if not (folder / "status").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(folder)], "mounting binfmt_misc")
    entry = folder / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        _run(["update-binfmts", "--enable", "qemu-aarch64"], "update-binfmts --enable")
    if not entry.exists() or "enabled" not in entry.read_text():
        raise LabError(f"binfmt_misc has no enabled qemu-aarch64 entry ({entry})")


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (its sources' first non-security URI)."""
    env = os.environ.get("EDGEOPT_DEBIAN_MIRROR")
    if env:
        return env
    files = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in files:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if "security" not in uri:
                        return uri
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    raise LabError("no Debian mirror in /etc/apt/sources*: set EDGEOPT_DEBIAN_MIRROR")


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """One builder of the cache at a time (two cold starts would write the same files)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _unmount_below(folder: Path) -> None:
    """Lazily unmount whatever is mounted under `folder` (deepest first)."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted(points, key=len, reverse=True):
        if point.startswith(str(folder) + "/"):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_tree(folder: Path) -> None:
    """rm -rf that never crosses into a file system mounted below `folder`."""
    _unmount_below(folder)
    subprocess.run(["rm", "-rf", "--one-file-system", str(folder)], capture_output=True,
                   check=False)  # fmt: skip


def build_base(log: Log) -> Path:
    """debootstrap the arm64 root and pack it into the cache (once)."""
    with _cache_lock():
        return _build_base(log)


def _build_base(log: Log) -> Path:
    out = base_tarball()
    if out.exists():
        return out
    work = out.parent / "building-root"
    _remove_tree(work)  # a build killed mid-way leaves its root (and debootstrap's mounts)
    log(f"building the Debian {SUITE} arm64 root with debootstrap (about 3 minutes; once)")
    start = time.monotonic()
    _run(
        ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}",
         SUITE, str(work), debian_mirror()],
        "debootstrap",
    )  # fmt: skip
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (work / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    tmp = out.with_suffix(".tmp")
    _run(["tar", "--numeric-owner", "-I", "zstd -T0 -10", "-C", str(work), "-cf", str(tmp), "."],
         "packing the root")  # fmt: skip
    tmp.rename(out)
    _remove_tree(work)
    log(f"root built in {time.monotonic() - start:.0f} s: {out} ({out.stat().st_size >> 20} MiB)")
    return out


def agent_wheels(log: Log) -> tuple[Path, Path]:
    """The agent's wheel and the folder of its aarch64 wheel set (fetched on this host)."""
    cache = cache_dir() / "wheels"
    wheel = build_wheel(cache)
    log(f"fetching the agent's aarch64 wheels for Python {BOARD.python}, glibc {BOARD.glibc}")
    return wheel, download_wheels(wheel, BOARD, cache)


def _dependency_digest(folder: Path) -> str:
    names = sorted(p.name for p in folder.glob("*.whl") if not p.name.startswith("edgeopt-"))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def _board_view(dest: Path) -> None:
    """The Pi 4's /proc/cpuinfo and a /sys holding its captured tree."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy(PI4 / "proc" / "cpuinfo", dest / "cpuinfo")
    shutil.copytree(PI4 / "sys", dest / "sys")
    cpus = dest / "sys" / "devices" / "system" / "cpu"
    count = (PI4 / "proc" / "cpuinfo").read_text().count("processor\t:")
    for name in ("online", "possible", "present"):  # what the kernel prints for 4 CPUs
        (cpus / name).write_text(f"0-{count - 1}\n")
    # The firmware's throttle flags as a healthy Pi prints them (the raspberrypi firmware
    # driver writes "%x\n"); a test writes others here to play a fault it cannot cause.
    flags = dest / THROTTLE_FILE
    flags.parent.mkdir(parents=True)
    flags.write_text("0\n")
    model = dest / "sys" / "firmware" / "devicetree" / "base" / "model"
    model.parent.mkdir(parents=True)
    shutil.copy(PI4 / "proc" / "device-tree" / "model", model)


@dataclass
class State:
    """A running lab, as `start` left it (run_dir/lab.json)."""

    pid: int
    address: str
    inventory: str
    token_file: str
    netns: str
    started_s: float
    """Seconds from launching the agent to its health service answering SERVING."""
    install_s: float
    """Seconds spent restoring the root and installing the agent."""
    ssh_target: str = ""
    """root@ADDRESS[:PORT] of the board's OpenSSH server (key login only)."""
    ssh_key: str = ""
    """The private key that logs in there."""
    known_hosts: str = ""
    """A known_hosts file holding the board's host key."""


def ssh_client_env(state: State, folder: Path) -> dict[str, str]:
    """Environment for `edgeopt` as a person who logs in to the board: a HOME under `folder`
    whose ~/.ssh holds the lab's key and the board's host key; the real cache of fetched
    wheels (kept across runs)."""
    home = folder / "home"
    if not home.exists():
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        shutil.copy(state.known_hosts, home / ".ssh" / "known_hosts")
        shutil.copy(state.ssh_key, home / ".ssh" / "id_ed25519")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return {"HOME": str(home), "SSH_AUTH_SOCK": "", "XDG_CACHE_HOME": str(cache)}


@dataclass
class Lab:
    """One emulated board: `name` is its device name in the inventory."""

    name: str = "arm-pi4"
    run_dir: Path = Path("/var/tmp/edgeopt-arm-lab")
    subnet: int = 250
    """Its namespace address is 10.77.<subnet>.2, the host's end 10.77.<subnet>.1."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    """The agent this object started (reaped by `stop`); None for one found running."""

    def __post_init__(self) -> None:
        self.run_dir = self.run_dir.resolve()

    @property
    def root(self) -> Path:
        return self.run_dir / "root"

    @property
    def marker(self) -> Path:
        """Written first by `start`: what this folder's lab made outside it (its network)."""
        return self.run_dir / MARKER

    @property
    def netns(self) -> str:
        return f"eo-{self.name}"

    @property
    def _links(self) -> tuple[str, str]:
        tag = hashlib.sha256(self.name.encode()).hexdigest()[:6]
        return f"eo{tag}h", f"eo{tag}b"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "lab.json"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "agent.log"

    def state(self) -> State | None:
        """The running lab, or None: a state whose agent died, or whose pid now names another
        process (after a reboot), counts as none."""
        try:
            state = State(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return state if state.pid in self._pids() else None

    def _check_network_free(self) -> None:
        """Refuse a name or subnet another lab (or anything else) holds here: its cleanup would
        otherwise take that one's network."""
        if netns.unavailable_reason() is not None:
            return
        there = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=False).stdout.split()  # fmt: skip
        if self.netns in there:
            raise LabError(
                f"a lab named {self.name} already runs from another folder (network "
                f"namespace {self.netns} exists): stop it, or choose another name"
            )
        used = _run(["ip", "-o", "addr", "show", "to", f"10.77.{self.subnet}.0/24"], "ip addr")
        if used.strip():
            raise LabError(f"10.77.{self.subnet}.0/24 is in use here ({used.split()[1]}): give "
                           "the lab another subnet")  # fmt: skip

    def _pids(self) -> list[int]:
        """Every process running in this lab's root: agents, runners, sshd, supervisors."""
        try:
            root = os.stat(self.root)
        except OSError:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                there = os.stat(entry / "root")
            except OSError:
                continue
            if (there.st_dev, there.st_ino) == (root.st_dev, root.st_ino):
                found.append(int(entry.name))
        return found

    def start(self, log: Log = print) -> State:
        """Restore the root, install the agent, start it on its own address; reuse a running one.

        Raises:
            LabError: the machine cannot run the lab, or the agent did not come up.
        """
        running = self.state()
        if running is not None:
            log(f"the lab is already running (agent pid {running.pid} at {running.address})")
            return running
        reason = unavailable_reason()
        if reason:
            raise LabError(reason)
        self.stop(quiet=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if any(self.run_dir.iterdir()):
            raise LabError(f"{self.run_dir} is not empty and holds no lab: choose another folder")
        self._check_network_free()
        self.run_dir.chmod(0o700)
        host_if, board_if = self._links
        self.marker.write_text(json.dumps({"name": self.name, "netns": self.netns,
                                           "links": [host_if, board_if]}) + "\n")  # fmt: skip
        try:
            return self._start(log)
        except BaseException:
            self.stop(quiet=True)
            raise

    def _start(self, log: Log) -> State:
        began = time.monotonic()
        base = build_base(log)
        wheel, wheels = agent_wheels(log)
        self.root.mkdir()
        _run(["tar", "--numeric-owner", "-I", "zstd", "-C", str(self.root), "-xf", str(base)],
             "restoring the root")  # fmt: skip
        self._install(wheel, wheels, log)
        _board_view(self.run_dir / "board")
        token = secrets.token_urlsafe(32)
        token_file = self.run_dir / "token"
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
        inside = self.root / "etc" / "edgeopt-agent"
        inside.mkdir(parents=True, exist_ok=True)
        (inside / "token").write_text(token + "\n")
        (inside / "token").chmod(0o600)
        install_s = time.monotonic() - began
        netns = self._network(log)
        host = f"10.77.{self.subnet}.2" if netns else "127.0.0.1"
        listen = f"{host}:{PORT}" if netns else f"{host}:{free_port()}"
        ssh_port = 22 if netns else free_port()
        ssh_target, ssh_key, known = self._ssh(host, ssh_port)
        pid, started_s = self._launch(listen, netns, token, f"{host}:{ssh_port}")
        inventory = self.run_dir / "edgeopt.toml"
        inventory.write_text(
            f"# The emulated Raspberry Pi 4 of `make arm-lab` ({SUITE} arm64 under qemu-user):\n"
            "# what it measures is EMULATED and says nothing about a real Pi.\n"
            f"[devices.{self.name}]\n"
            f'address = "{listen}"\n'
            'profile = "pi4"\n'
            'tags = ["arm-lab", "emulated"]\n'
            'token_file = "token"\n'
        )
        state = State(pid=pid, address=listen, inventory=str(inventory),
                      token_file=str(token_file), netns=netns, started_s=started_s,
                      install_s=install_s, ssh_target=ssh_target, ssh_key=str(ssh_key),
                      known_hosts=str(known))  # fmt: skip
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        log(f"agent pid {pid} serving at {listen} after {started_s:.1f} s "
            f"(root and install {install_s:.0f} s)")  # fmt: skip
        return state

    def restart(self) -> State:
        """Stop the running agent and start it again on the same root (a start-up measurement).

        Raises:
            LabError: the lab is not running, or the agent did not come back.
        """
        state = self.state()
        if state is None:
            raise LabError("the lab is not running")
        _terminate(state.pid, self.process)
        self.process = None
        token = Path(state.token_file).read_text().strip()
        ssh = state.ssh_target.split("@", 1)[1]
        ssh = ssh if ":" in ssh else f"{ssh}:22"
        pid, started_s = self._launch(state.address, state.netns, token, ssh)
        state = State(**{**asdict(state), "pid": pid, "started_s": started_s})
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        return state

    def _ssh(self, host: str, port: int) -> tuple[str, Path, Path]:
        """A key that logs in as root, and a known_hosts file holding the board's host key."""
        key = self.run_dir / "id_ed25519"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgeopt-{self.name}",
              "-f", str(key)], "ssh-keygen")  # fmt: skip
        dot_ssh = self.root / "root" / ".ssh"
        dot_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (dot_ssh / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        (dot_ssh / "authorized_keys").chmod(0o600)
        known = self.run_dir / "known_hosts"
        name = host if port == 22 else f"[{host}]:{port}"
        keys = sorted((self.root / "etc" / "ssh").glob("ssh_host_*_key.pub"))
        lines = [f"{name} {' '.join(p.read_text().split()[:2])}" for p in keys]
        known.write_text("\n".join(lines) + "\n")
        return f"root@{host}" + (f":{port}" if port != 22 else ""), key, known

    def _chroot(self, *cmd: str) -> list[str]:
        return ["chroot", str(self.root), *cmd]

    def _install(self, wheel: Path, wheels: Path, log: Log) -> None:
        """The venv with the agent's wheel set, from the cache or built under emulation."""
        target = self.root / WHEELS.lstrip("/")
        target.mkdir(parents=True)
        # The folder also holds the edgeopt wheel pip download copied when it was filled: the
        # one built from this tree now replaces it.
        for path in [*(p for p in wheels.glob("*.whl") if p.name != wheel.name), wheel]:
            shutil.copy(path, target / path.name)
        cached = cache_dir() / f"venv-{_dependency_digest(wheels)}.tar.zst"
        pip = [f"{VENV}/bin/pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-index", "--find-links", WHEELS, "--only-binary=:all:"]  # fmt: skip
        if cached.exists():
            _run(["tar", "--numeric-owner", "-I", "zstd", "-C", str(self.root), "-xf",
                  str(cached)], "restoring the agent's venv")  # fmt: skip
            log("reinstalling the agent's wheel into the cached venv (emulated pip)")
            _run(self._chroot(*pip, "--no-deps", "--force-reinstall", f"{WHEELS}/{wheel.name}"),
                 "pip install (the agent's wheel)")  # fmt: skip
            return
        log("installing the agent's wheel set into a venv under emulation (about a minute; once)")
        _run(self._chroot("/usr/bin/python3", "-m", "venv", VENV), "python3 -m venv")
        _run(self._chroot(*pip, f"{WHEELS}/{wheel.name}"), "pip install (the agent's wheel set)")
        with _cache_lock():
            if not cached.exists():
                tmp = cached.with_suffix(".tmp")
                _run(["tar", "--numeric-owner", "-I", "zstd -T0 -10", "-C", str(self.root),
                      "-cf", str(tmp), VENV.lstrip("/")], "packing the venv")  # fmt: skip
                tmp.rename(cached)

    def _network(self, log: Log) -> str:
        """Its own namespace and address ("" when this machine cannot make namespaces)."""
        reason = netns.unavailable_reason()
        if reason:
            log(f"no network namespace ({reason}): the agent listens on a loopback port")
            return ""
        host_if, board_if = self._links
        host, board = f"10.77.{self.subnet}.1", f"10.77.{self.subnet}.2"
        steps = [
            ["netns", "add", self.netns],
            ["link", "add", host_if, "type", "veth", "peer", "name", board_if],
            ["link", "set", board_if, "netns", self.netns],
            ["addr", "add", f"{host}/30", "dev", host_if],
            ["link", "set", host_if, "up"],
            ["-n", self.netns, "addr", "add", f"{board}/30", "dev", board_if],
            ["-n", self.netns, "link", "set", board_if, "up"],
            ["-n", self.netns, "link", "set", "lo", "up"],
        ]
        for step in steps:
            _run(["ip", *step], f"ip {' '.join(step)}")
        return self.netns

    def _launch(self, listen: str, netns: str, token: str, ssh: str) -> tuple[int, float]:
        """Start the agent chrooted with the board's view; its pid and seconds to SERVING."""
        root, board = self.root, self.run_dir / "board"
        ready = root / "run" / "edgeopt-agent.ready"
        ready.unlink(missing_ok=True)
        script = self.run_dir / "launch.sh"
        script.write_text(
            "#!/bin/sh\n"
            "# Runs in a private mount namespace: nothing mounted here is seen outside it.\n"
            "set -e\n"
            f"R={shlex.quote(str(root))}\n"
            'mount -t proc proc "$R/proc"\n'
            f'mount --bind {shlex.quote(str(board / "cpuinfo"))} "$R/proc/cpuinfo"\n'
            f'mount --bind {shlex.quote(str(board / "sys"))} "$R/sys"\n'
            'mount -o remount,bind,ro "$R/sys"\n'
            'mount --rbind /dev "$R/dev"\n'
            'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"\n'
            'mkdir -p "$R/run/sshd"\n'
            "# The board's OpenSSH server (key login only), in the agent's process group.\n"
            f'chroot "$R" /usr/sbin/sshd -D -e -o ListenAddress={ssh} '
            "-o PasswordAuthentication=no -o UseDNS=no "
            f">> {shlex.quote(str(self.run_dir / 'sshd.log'))} 2>&1 &\n"
            "cd /\n"
            f'exec chroot "$R" {VENV}/bin/edgeopt-agent serve --listen {listen} '
            f"--store {STORE} --token-file /etc/edgeopt-agent/token "
            # Plaintext beyond loopback: the lab's network is a private namespace on this machine.
            "--ready-file /run/edgeopt-agent.ready --log-level INFO --insecure\n"
        )
        prefix = ["ip", "netns", "exec", netns] if netns else []
        cmd = [*prefix, "unshare", "--mount", "--propagation", "private", "sh", str(script)]
        begin = time.monotonic()
        with self.log_file.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.process = proc  # reaped by stop, whatever happens next
        deadline = begin + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"the emulated agent exited ({proc.returncode}):\n"
                               f"{self.log_file.read_text()[-3000:]}")  # fmt: skip
            if ready.exists() and _serving(listen, token):
                return proc.pid, time.monotonic() - begin
            time.sleep(0.1)
        raise LabError(f"the emulated agent did not serve within {START_TIMEOUT:.0f} s:\n"
                       f"{self.log_file.read_text()[-3000:]}")  # fmt: skip

    def stop(self, quiet: bool = False, log: Log = print) -> None:
        """Stop every process in the lab's root, remove what its marker says it made (network
        namespace, veth) and its run folder; the cache stays.

        Raises:
            LabError: the run folder holds files but no lab marker: it is not touched.
        """
        if not self.marker.exists():
            if self.run_dir.exists() and any(self.run_dir.iterdir()):
                raise LabError(f"{self.run_dir} holds no ARM lab ({MARKER} missing): not "
                               "touching it")  # fmt: skip
            if not quiet:
                log("the lab was not running")
            return
        made = json.loads(self.marker.read_text())
        state = None
        with contextlib.suppress(OSError, ValueError, TypeError):
            state = State(**json.loads(self.state_file.read_text()))
        if state is not None and state.pid in self._pids():
            _terminate(state.pid, None)  # SIGTERM first: the agent drains and stops its runner
        for sig in (signal.SIGTERM, signal.SIGKILL):  # then sshd, supervisors, stragglers
            for pid in self._pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while self._pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=15)
            self.process = None
        subprocess.run(["ip", "netns", "del", made["netns"]], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", made["links"][0]], capture_output=True, check=False)
        _remove_tree(self.run_dir)  # the mounts died with the agent's namespace; a crash's won't
        if not quiet:
            log(f"stopped the lab and removed {self.run_dir}")


def _terminate(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM to the lab's process group (the agent drains and stops its runner; sshd), then
    SIGKILL to whatever of it is left after 15 s, or once the agent is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=15)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def _serving(address: str, token: str) -> bool:
    """Whether the agent's standard health service answers SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2,
                               metadata=(("authorization", f"Bearer {token}"),))  # fmt: skip
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.arm_lab start|stop|status`."""
    parser = argparse.ArgumentParser(prog="python -m tests.arm_lab", description=__doc__.split(
        "\n")[0])  # fmt: skip
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--name", default=Lab.name, help="the device's name (default: arm-pi4)")
    parser.add_argument("--run-dir", type=Path, help="default: /var/tmp/edgeopt-NAME")
    parser.add_argument("--subnet", type=int, default=Lab.subnet,
                        help="the board's address is 10.77.SUBNET.2 (default: 250)")  # fmt: skip
    args = parser.parse_args(argv)
    default_dir = Lab.run_dir if args.name == Lab.name else Path(f"/var/tmp/edgeopt-{args.name}")
    lab = Lab(name=args.name, run_dir=args.run_dir or default_dir, subnet=args.subnet)

    def log(text: str) -> None:
        print(f"arm-lab: {text}", file=sys.stderr, flush=True)

    if args.command == "stop":
        try:
            lab.stop(log=log)
        except LabError as exc:
            log(str(exc))
            return 2
        return 0
    if args.command == "status":
        state = lab.state()
        print(json.dumps(asdict(state), indent=2) if state else "not running")
        return 0 if state else 1
    try:
        state = lab.start(log=log)
    except LabError as exc:
        log(str(exc))
        return 2
    log(f"try: EDGEOPT_INVENTORY={state.inventory} .venv/bin/edgeopt devices show {lab.name}")
    log(
        f"over SSH (root, key login): .venv/bin/edgeopt ssh facts {state.ssh_target} "
        f"-i {state.ssh_key} --accept-new-host-key"
    )
    log("`make arm-lab-stop` stops it")
    print(f"EDGEOPT_INVENTORY={state.inventory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
