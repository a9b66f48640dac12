"""Protobuf text format (AMCT's quant.cfg, ATC's aipp.conf) read by the protobuf library itself, against
schemas declared here in a few lines instead of .proto files and generated code."""
from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, text_format

try:
    from google.protobuf.message_factory import GetMessageClass
except ImportError:  # protobuf < 4.21, as the mmdeploy exporter's environment pins it
    from google.protobuf.message_factory import MessageFactory

    def GetMessageClass(descriptor):  # noqa: N802 - the newer protobuf's name
        return MessageFactory().GetPrototype(descriptor)

from poc.shared.bins import read_text_file
from poc.shared.errors import InputError

F = descriptor_pb2.FieldDescriptorProto


def message_class(package: str, messages: dict, root: str, enums: dict | None = None):
    """A message class from ``messages`` = {name: [(field, type, label, type name or None)]} and
    ``enums`` = {name: [value names]}; field numbers follow the listing order."""
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    for enum_name, values in (enums or {}).items():
        enum = fdp.enum_type.add(name=enum_name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for msg_name, fields in messages.items():
        msg = fdp.message_type.add(name=msg_name)
        for number, (name, ftype, label, type_name) in enumerate(fields, start=1):
            f = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return GetMessageClass(pool.FindMessageTypeByName(f"{package}.{root}"))


def parse_file(path, message_cls, what: str):
    """Parse ``path`` into a new message; errors name the file and the line."""
    path = Path(path)
    text = read_text_file(path, what)
    msg = message_cls()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as err:
        m = re.match(r"(\d+):(\d+)\s*:\s*(.*)", str(err))
        detail = (m.group(3) if m else str(err)).replace(f"{message_cls.DESCRIPTOR.file.package}.", "")
        raise InputError(path, f"line {m.group(1)}: {detail}" if m else detail) from None
    return msg
