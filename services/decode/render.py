"""Show a decoded frame, telegram or SML file as JSON or as rich tables."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from enum import Enum
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.tree import Tree
from smtestbed.proto.records import DataBlock
from smtestbed.proto.sml import ObisCode, SmlFile, readings_from_file
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.services.decode.detect import Decoded

__all__ = ["render_json", "render_table", "to_jsonable"]


def to_jsonable(value: object) -> Any:
    """Turn decoded values into JSON types: dataclasses to objects, bytes to hex strings."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, ObisCode):
        return str(value)
    if isinstance(value, MeterAddress):
        return _address(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"type": type(value).__name__}
        for field in dataclasses.fields(value):
            out[field.name] = to_jsonable(getattr(value, field.name))
        return out
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return str(value)


def _address(address: MeterAddress) -> dict[str, Any]:
    """Show the meter ID as its 8 BCD digits ("33221100"), as on the meter's label."""
    return {
        "type": "MeterAddress",
        "manufacturer": address.manufacturer_code,
        "ident": address.id_text,
        "version": address.version,
        "device_type": address.device_type,
    }


def _readings(decoded: Decoded) -> list[dict[str, Any]]:
    if not isinstance(decoded.result, SmlFile):
        return []
    return [
        {
            "obis": str(r.obis),
            "value": to_jsonable(r.value),
            "unit": r.unit_symbol,
            "signed": r.signed,
        }
        for r in readings_from_file(decoded.result)
    ]


def render_json(decoded: Decoded) -> str:
    """Return one JSON document: protocol, size, every decoded layer, SML readings."""
    document: dict[str, Any] = {
        "protocol": str(decoded.protocol),
        "size": decoded.size,
        "decoded": to_jsonable(decoded.result),
    }
    if isinstance(decoded.result, SmlFile):
        document["readings"] = _readings(decoded)
    return json.dumps(document, indent=2, ensure_ascii=False)


def _tree(label: str, value: Any, tree: Tree | None = None) -> Tree:
    node = Tree(label) if tree is None else tree.add(label)
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "type":
                continue
            _add(node, key, item)
    else:
        for index, item in enumerate(value):
            _add(node, f"[{index}]", item)
    return node


def _add(node: Tree, key: str, item: Any) -> None:
    if isinstance(item, dict | list) and item:
        kind = item.get("type", "") if isinstance(item, dict) else f"{len(item)} items"
        _tree(f"[bold]{key}[/bold] {kind}", item, node)
    else:
        node.add(f"{key}: {item}")


def _records_table(block: DataBlock) -> Table:
    table = Table(title="data records")
    for column in ("#", "function", "storage", "tariff", "value", "unit", "quantity"):
        table.add_column(column)
    for index, record in enumerate(block.records):
        table.add_row(
            str(index),
            str(record.function),
            str(record.storage_number),
            str(record.tariff),
            str(to_jsonable(record.value)),
            record.unit,
            record.quantity,
        )
    return table


def _readings_table(decoded: Decoded) -> Table:
    table = Table(title="SML readings")
    for column in ("OBIS", "value", "unit", "signed"):
        table.add_column(column)
    for row in _readings(decoded):
        table.add_row(row["obis"], str(row["value"]), row["unit"], "yes" if row["signed"] else "")
    return table


def _find_blocks(value: object) -> list[DataBlock]:
    if isinstance(value, DataBlock):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [b for f in dataclasses.fields(value) for b in _find_blocks(getattr(value, f.name))]
    return []


def render_table(decoded: Decoded, console: Console) -> None:
    """Print every layer as a tree, then the data records or SML readings as tables."""
    title = f"{decoded.protocol.value}: {type(decoded.result).__name__}, {decoded.size} bytes"
    parts: list[RenderableType] = [_tree(title, to_jsonable(decoded.result))]
    parts += [_records_table(block) for block in _find_blocks(decoded.result)]
    if isinstance(decoded.result, SmlFile):
        parts.append(_readings_table(decoded))
    console.print(Group(*parts))
