"""Backup, restore and fast join for a node's data directory (docs/ops.md, "Backup, restore and
fast join"): what `gmchain db snapshot` and `gmchain db restore` run, and the admin socket a
running node takes snapshots through.

Rules this module keeps:
1. A running node holds its LevelDB's lock, so only it can read its store: it listens on a Unix
   socket next to its data directory (`<data_dir>.admin.sock`, mode 0600, so only the account
   that runs the node, or root, can connect: no network exposure, no token to leak) and takes
   the snapshot itself, in a worker thread, from one LevelDB snapshot (ledger/snapshot.py rule
   1): the node keeps committing meanwhile. A stopped node's store is opened directly.
   Why not an RPC method: the RPC may listen on other hosts, behind a proxy that makes every
   caller look local; why not a signal: a signal cannot say where to write the file.
2. Restore never writes into the target until everything is checked: the snapshot is staged
   and checked whole (ledger/snapshot.py rule 4), the store is rebuilt and checked against the
   genesis' certificates in a scratch directory beside the target (chain/fastjoin.py), and only
   then renamed to the target, which must be absent or empty. Any failure removes the scratch
   directories and leaves the target as it was.
3. A restored store carries the sealed marker `restored_from_snapshot` (the height restored) and
   no consensus safety data: a validator key started on it refuses to start until the operator
   sets its safety data (`gmchain db safety-reset PATH --round R`, R at least the highest round
   any other validator reports), because it cannot know in which rounds this key already voted
   (node/safetystore.py `check_signing_start`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gmchain.chain.fastjoin import JoinReport, fast_join
from gmchain.ledger import store_keys as k
from gmchain.ledger.snapshot import (
    Manifest,
    SnapshotError,
    SnapshotReader,
    read_manifest,
    stage_snapshot,
    write_snapshot,
)
from gmchain.ledger.snapshot_crypt import decrypt_snapshot, is_encrypted
from gmchain.ledger.store import Store, StoreError
from gmchain.ledger.types import Genesis
from gmchain.node.safetystore import META_RESTORED

__all__ = [
    "META_RESTORED",
    "AdminSocket",
    "admin_socket_path",
    "request_snapshot",
    "restore_snapshot",
    "take_snapshot",
]

log = logging.getLogger("gmchain.node")

_REQUEST_MAX = 8192
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with its NUL (Linux)


def admin_socket_path(data_dir: str | os.PathLike[str]) -> Path:
    d = Path(data_dir)
    return d.with_name(d.name + ".admin.sock")


def _now_ms() -> int:
    return int(time.time() * 1000)


class AdminSocket:
    """Rule 1: the running node's admin endpoint. One request per connection, one JSON line
    each way: {"op": "snapshot", "out": ABSOLUTE PATH} -> {"ok": true, "manifest": {...}} or
    {"ok": false, "error": "..."}. One snapshot at a time."""

    def __init__(self, store: Store, path: Path) -> None:
        self._store = store
        self._path = path
        self._server: asyncio.AbstractServer | None = None
        self._busy = asyncio.Lock()

    async def start(self) -> None:
        """Listen; if the socket cannot be made (e.g. its path is longer than the 107 bytes a
        Unix socket name may have), log a warning and go on: the node runs, and a snapshot then
        needs the node stopped (`gmchain db snapshot` opens the store itself)."""
        if self._path.exists():
            with contextlib.suppress(OSError):  # a live node holds the store lock: not ours
                self._path.unlink()
        old = os.umask(0o177)
        try:
            if len(os.fsencode(self._path)) > _SUN_PATH_MAX:
                raise OSError(f"path longer than {_SUN_PATH_MAX} bytes")
            self._server = await asyncio.start_unix_server(self._handle, path=str(self._path))
            os.chmod(self._path, 0o600)
        except OSError as e:
            log.warning("no admin socket at %s (%s): online snapshots are off", self._path, e)
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            self._path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            answer = await self._answer(line[:_REQUEST_MAX])
        except (TimeoutError, OSError, ValueError) as e:
            answer = {"ok": False, "error": f"bad request: {e}"}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        req = json.loads(line or b"{}")
        if not isinstance(req, dict) or req.get("op") != "snapshot":
            return {"ok": False, "error": "unknown request (the only op is snapshot)"}
        out = req.get("out")
        if not isinstance(out, str) or not os.path.isabs(out):
            return {"ok": False, "error": "out must be an absolute path"}
        async with self._busy:
            try:
                m = await asyncio.to_thread(write_snapshot, self._store, out, created_ms=_now_ms())
            except (StoreError, OSError) as e:
                return {"ok": False, "error": str(e)}
        log.info("snapshot of height %d written to %s", m.height, out)
        return {"ok": True, "manifest": m.to_json()}


def request_snapshot(sock: Path, out: Path, *, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Ask the node listening on `sock` for a snapshot into `out`; its manifest (JSON).
    Raises ConnectionError if no node listens there, StoreError if the node refused."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(sock))
        s.sendall(json.dumps({"op": "snapshot", "out": str(out.resolve())}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf or b"{}")
    if not answer.get("ok"):
        raise StoreError(f"the node refused: {answer.get('error', 'no answer')}")
    manifest: dict[str, Any] = answer["manifest"]
    return manifest


def take_snapshot(data_dir: str, out: Path) -> dict[str, Any]:
    """Rule 1: through the running node's admin socket, or from the stopped node's store."""
    sock = admin_socket_path(data_dir)
    if sock.exists():
        try:
            return request_snapshot(sock, out)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # a socket file left by a node that died: the store is free
    with Store.open(data_dir, create=False, verify_checksums=True) as store:
        return write_snapshot(store, out, created_ms=_now_ms()).to_json()


def _check_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StoreError(f"{target} exists and is not an empty directory; restore needs a new one")


def restore_snapshot(
    snapshot: Path,
    target: Path,
    genesis: Genesis,
    *,
    progress: Callable[[int, int], None] | None = None,
    passphrase: bytes | None = None,
) -> tuple[Manifest, JoinReport]:
    """Rule 2: check `snapshot` against `genesis` and rebuild the store at `target` from it
    (an encrypted snapshot, ledger/snapshot_crypt.py, is decrypted with `passphrase` first).
    Raises SnapshotError (damaged file, wrong passphrase), StoreError (target not empty, another
    chain) or chain.fastjoin.FastJoinError (not the certified chain)."""
    _check_target(target)
    if is_encrypted(snapshot):
        if passphrase is None:
            raise SnapshotError("the snapshot is encrypted: a passphrase is needed")
        target.parent.mkdir(parents=True, exist_ok=True)
        plain = target.with_name(f"{target.name}.restore-{os.getpid()}.plain")
        plain.unlink(missing_ok=True)
        try:
            decrypt_snapshot(snapshot, plain, passphrase)
            return restore_snapshot(plain, target, genesis, progress=progress)
        finally:
            plain.unlink(missing_ok=True)
    manifest = read_manifest(snapshot)
    if manifest.chain_id != genesis.chain_id:
        raise StoreError(
            f"the snapshot is of chain {manifest.chain_id!r}, this genesis of {genesis.chain_id!r}"
        )
    if manifest.genesis_hash != genesis.compute_hash().hex():
        raise StoreError("the snapshot is of another genesis (its genesis hash differs)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{target.name}.restore-{os.getpid()}"
    scratch, build = target.with_name(tag + ".stage"), target.with_name(tag + ".new")
    for d in (scratch, build):
        shutil.rmtree(d, ignore_errors=True)
    try:
        stage_snapshot(snapshot, scratch)
        with SnapshotReader(scratch) as reader:
            if reader.head() != (manifest.height, bytes.fromhex(manifest.head_hash)):
                raise SnapshotError("the snapshot's head record differs from its manifest")
            with Store.open(build, chain_id=genesis.chain_id) as store:
                report = fast_join(reader, genesis, store, progress=progress)
                store.put_sealed_meta(META_RESTORED, k.encode_height(report.height))
        _check_target(target)  # (again: it may have been filled meanwhile)
        if target.exists():
            target.rmdir()
        os.replace(build, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(build, ignore_errors=True)
    return manifest, report
