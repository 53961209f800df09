"""The committed LND stubs must match the proto subset they were generated from.

Two checks: the descriptors embedded in the committed modules equal what protoc
compiles from the .proto files today (independent of the grpcio-tools version),
and, when the installed grpcio-tools is the one that generated the stubs, the
files are byte-identical to a fresh regeneration.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from lnplugin.nodes.lnd.rpc import invoices_pb2, lightning_pb2

ROOT = Path(__file__).resolve().parent.parent
RPC_DIR = ROOT / "lnplugin" / "nodes" / "lnd" / "rpc"
PROTO_DIR = ROOT / "lnplugin" / "nodes" / "lnd" / "proto"


def _generated_with() -> str:
    text = (RPC_DIR / "lightning_pb2_grpc.py").read_text()
    match = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", text)
    assert match, "lightning_pb2_grpc.py has no GRPC_GENERATED_VERSION"
    return match.group(1)


def _drop_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    """protoc fills json_name in descriptor sets but not in the embedded copies."""

    def walk(messages) -> None:
        for message in messages:
            for fld in message.field:
                fld.ClearField("json_name")
            walk(message.nested_type)

    walk(file.message_type)


def test_descriptors_match_protos(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "set.pb"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--descriptor_set_out={out}",
            "lightning.proto",
            "invoices.proto",
        ]
    )
    assert rc == 0
    fresh = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    for f in fresh.values():
        _drop_json_names(f)
    for module in (lightning_pb2, invoices_pb2):
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert committed == fresh[committed.name], (
            f"{committed.name} stubs are stale: run python contrib/regen_lnd_stubs.py"
        )


def test_stub_files_identical_to_regeneration(tmp_path: Path) -> None:
    installed = importlib.metadata.version("grpcio-tools")
    if installed != _generated_with():
        pytest.skip(f"stubs were generated with grpcio-tools {_generated_with()}, have {installed}")
    subprocess.run(
        [sys.executable, str(ROOT / "contrib" / "regen_lnd_stubs.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in RPC_DIR.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run python contrib/regen_lnd_stubs.py"
