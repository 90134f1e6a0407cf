"""Run a script as an unprivileged user with an Electrum plugin key in /etc/electrum, without
touching the real /etc, /root or user database.

Electrum 4.8 trusts ``/etc/electrum/plugins_key`` (a fixed path, ``Plugins.keyfile_posix``) only
if it is owned by root *and not writable by the running user* — never when Electrum runs as root.
So the zip-plugin test runs Electrum as a test user, and needs:

* the key file at the fixed /etc path (root-owned, 0644),
* a test user (created if missing),
* read/search access for that user to the project's Python, whose interpreter and Electrum live
  under /root (mode 0700) on the CI machines.

All three are done inside a private mount namespace (``unshare --mount``): an overlay over /etc
(the key file and a ``useradd`` land in a temporary upper dir), and a tmpfs over each blocking
directory (e.g. /root) into which only the needed children (e.g. /root/.pyenv, /root/.cache) are
bind-mounted back. When the namespace ends, nothing of it remains; the real /etc/electrum (if
any) is never opened.
"""
from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from typing import Iterable

TEST_USER = "ejmtest"


def namespace_support() -> str | None:
    """None if private mount namespaces with overlayfs work here, else the reason."""
    if os.geteuid() != 0:
        return "not root (needs to create /etc/electrum/plugins_key and a user)"
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        "mount -t tmpfs tmpfs /mnt"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a mount namespace: {r.stderr.strip()}"
    return None


def blocked_dirs(paths: Iterable[str]) -> dict[str, set[str]]:
    """For each path, the first ancestor directory that others cannot search, mapped to the set
    of its children that lead to the paths."""
    out: dict[str, set[str]] = {}
    for p in paths:
        p = os.path.abspath(p)
        parts = pathlib.PurePosixPath(p).parts
        cur = "/"
        for part in parts[1:]:
            st = os.stat(cur)
            if not st.st_mode & stat.S_IXOTH:
                out.setdefault(cur, set()).add(part)
                break
            cur = os.path.join(cur, part)
    return out


def python_paths() -> list[str]:
    """What the test user must reach to run this Python with Electrum and the project."""
    import electrum
    paths = [os.path.realpath(sys.executable), sys.base_prefix, sys.prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(electrum.__file__)))]
    paths += [p for p in sys.path if p and os.path.isdir(p)]
    return sorted(set(paths))


def wait_for_electrum_rpc_sh(datadir: pathlib.Path) -> str:
    """A bash line that waits (up to 60 s) until the Electrum daemon on ``datadir`` (regtest)
    wrote its lockfile, i.e. its RPC server listens: a client started before that only finds it
    not running, for ~1 s of CPU."""
    lock = shlex.quote(str(datadir / "regtest" / "daemon"))
    return f"for i in $(seq 1 300); do if [ -s {lock} ]; then break; fi; sleep 0.2; done"


def make_user_dir() -> pathlib.Path:
    """A fresh directory the test user can use (the pytest tmp dir is root-only)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="ejm-zip-test-", dir="/tmp"))
    os.chmod(base, 0o711)
    (base / "root-only").mkdir(mode=0o700)
    (base / "user").mkdir(mode=0o755)
    return base


def run_as_test_user(base: pathlib.Path, *, key_hex: str | None, user_script: str, root_script: str = "",
                     expose: Iterable[str] = (), env: dict | None = None,
                     timeout: float = 300) -> subprocess.CompletedProcess:
    """In a private mount namespace: overlay /etc, create the test user if missing, write the
    plugin key, expose ``expose`` paths, ``chown -R`` ``base/user`` to the user, run
    ``root_script`` (bash) as root, then ``user_script`` (bash) as the user with a clean env.
    ``key_hex=None`` writes no key (the root script may, e.g. with install_zip_plugin.py)."""
    ro = base / "root-only"
    user_dir = base / "user"
    (ro / "etc-upper").mkdir(exist_ok=True)
    (ro / "etc-work").mkdir(exist_ok=True)
    (user_dir / "run.sh").write_text("set -eu\n" + user_script)
    (ro / "root.sh").write_text("set -eu\n" + root_script)
    mounts = []
    for i, (blocked, children) in enumerate(sorted(blocked_dirs(expose).items())):
        stash = ro / f"stash{i}"
        mounts.append(f"mkdir -p {stash} && mount --bind {shlex.quote(blocked)} {stash}")
        mounts.append(f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(blocked)}")
        for child in sorted(children):
            src, dst = shlex.quote(f"{stash}/{child}"), shlex.quote(f"{blocked}/{child}")
            mounts.append(f"if [ -d {src} ]; then mkdir -p {dst}; else touch {dst}; fi && "
                          f"mount --bind {src} {dst}")
    user_env = {"PATH": "/usr/bin:/bin", "HOME": str(user_dir), "LANG": "C.UTF-8",
                "QT_QPA_PLATFORM": "offscreen", "PYTHONDONTWRITEBYTECODE": "1"}
    user_env.update(env or {})
    env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in user_env.items())
    u = TEST_USER
    write_key = "rm -rf /etc/electrum" if key_hex is None else f"""mkdir -p /etc/electrum
chown root:root /etc/electrum && chmod 755 /etc/electrum
printf '%s' {shlex.quote(key_hex)} > /etc/electrum/plugins_key
chown root:root /etc/electrum/plugins_key && chmod 644 /etc/electrum/plugins_key"""
    outer = f"""set -eu
mount -t overlay overlay -o lowerdir=/etc,upperdir={ro}/etc-upper,workdir={ro}/etc-work /etc
getent passwd {u} >/dev/null || useradd --system --no-create-home --home-dir /nonexistent \\
    --shell /usr/sbin/nologin --user-group {u}
{write_key}
{chr(10).join(mounts)}
chown -R {u}:{u} {user_dir}
bash {ro}/root.sh
cd {user_dir}
exec setpriv --reuid={u} --regid={u} --init-groups --inh-caps=-all --bounding-set=-all \\
    env -i {env_args} bash {user_dir}/run.sh
"""
    (ro / "outer.sh").write_text(outer)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", str(ro / "outer.sh")],
                          capture_output=True, text=True, timeout=timeout)


def cleanup(base: pathlib.Path) -> None:
    shutil.rmtree(base, ignore_errors=True)
