"""Avro single-object decoding for the end-to-end tests and the demo.

Written from the Avro specification, independently of the C codec under test: the Parsing
Canonical Form and the CRC-64-AVRO fingerprint are computed here in Python, and a value is
accepted only if it starts with C3 01 followed by the fingerprint of a schema in schemas/.
The datum itself is decoded with the standard `avro` library (python3-avro).
"""

import io
import json
import os

import avro.io
import avro.schema

MAGIC = b"\xc3\x01"
CRC64_EMPTY = 0xC15D213AA4D7A795

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_FIELD_ORDER = ("name", "type", "fields", "symbols", "items", "values", "size")


def _crc64_table():
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_CRC_TABLE = _crc64_table()


def crc64_avro(data):
    """CRC-64-AVRO (Rabin) fingerprint as defined in the Avro specification."""
    fp = CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC_TABLE[(fp ^ byte) & 0xFF]
    return fp


def _fullname(name, namespace):
    if "." in name or not namespace:
        return name
    return namespace + "." + name


def _pcf(schema, namespace, seen):
    """Parsing Canonical Form of a parsed JSON schema, as a compact JSON string."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return json.dumps(schema)
        return json.dumps(_fullname(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(_pcf(s, namespace, seen) for s in schema) + "]"
    kind = schema["type"]
    if isinstance(kind, str) and kind in _PRIMITIVES:
        return json.dumps(kind)  # {"type":"long","logicalType":...} -> "long"
    if not isinstance(kind, str):
        return _pcf(kind, namespace, seen)
    if kind not in ("record", "error", "enum", "fixed", "array", "map"):
        return json.dumps(_fullname(kind, namespace))
    parts = []
    if kind in ("record", "error", "enum", "fixed"):
        ns = schema.get("namespace", namespace)
        full = _fullname(schema["name"], ns)
        if "." in full:
            ns = full.rsplit(".", 1)[0]
        if full in seen:
            return json.dumps(full)
        seen.add(full)
        parts.append('"name":' + json.dumps(full))
        namespace = ns
    parts.append('"type":' + json.dumps("record" if kind == "error" else kind))
    if kind in ("record", "error"):
        fields = []
        for f in schema["fields"]:
            fields.append('{"name":' + json.dumps(f["name"]) + ',"type":'
                          + _pcf(f["type"], namespace, seen) + "}")
        parts.append('"fields":[' + ",".join(fields) + "]")
    elif kind == "enum":
        parts.append('"symbols":[' + ",".join(json.dumps(s) for s in schema["symbols"]) + "]")
    elif kind == "array":
        parts.append('"items":' + _pcf(schema["items"], namespace, seen))
    elif kind == "map":
        parts.append('"values":' + _pcf(schema["values"], namespace, seen))
    elif kind == "fixed":
        parts.append('"size":' + str(int(schema["size"])))
    return "{" + ",".join(parts) + "}"


def canonical_form(schema_text):
    return _pcf(json.loads(schema_text), None, set())


def fingerprint(schema_text):
    return crc64_avro(canonical_form(schema_text).encode("utf-8"))


class SchemaSet:
    """All schemas/*.avsc, indexed by file stem (e.g. 'biometric_event.v1') and fingerprint."""

    def __init__(self, schema_dir):
        self.by_name = {}
        self.by_fp = {}
        if not os.path.isdir(schema_dir):
            raise RuntimeError("schema directory missing: " + schema_dir)
        for fn in sorted(os.listdir(schema_dir)):
            if not fn.endswith(".avsc"):
                continue
            with open(os.path.join(schema_dir, fn), encoding="utf-8") as fh:
                text = fh.read()
            stem = fn[: -len(".avsc")]
            entry = {
                "name": stem,
                "text": text,
                "pcf": canonical_form(text),
                "fp": fingerprint(text),
                "schema": avro.schema.parse(text),
            }
            self.by_name[stem] = entry
            self.by_fp[entry["fp"]] = entry

    def fp(self, stem):
        if stem not in self.by_name:
            raise KeyError("no schema %s.avsc in schemas/ (have: %s)"
                           % (stem, ", ".join(sorted(self.by_name))))
        return self.by_name[stem]["fp"]

    def decode(self, value, expect=None):
        """Decode one single-object-encoded value. With `expect` (a schema stem), the value must
        carry that schema's fingerprint. Returns (stem, datum dict); raises ValueError."""
        if value is None or len(value) < 10:
            raise ValueError("value shorter than the single-object header")
        if value[:2] != MAGIC:
            raise ValueError("bad single-object magic %r" % value[:2])
        fp = int.from_bytes(value[2:10], "little")
        if expect is not None and fp != self.fp(expect):
            raise ValueError("fingerprint %016x is not that of %s.avsc (%016x)"
                             % (fp, expect, self.fp(expect)))
        entry = self.by_fp.get(fp)
        if entry is None:
            raise ValueError("unknown schema fingerprint %016x" % fp)
        reader = avro.io.DatumReader(entry["schema"])
        buf = io.BytesIO(value[10:])
        datum = reader.read(avro.io.BinaryDecoder(buf))
        if buf.tell() != len(value) - 10:
            raise ValueError("%d trailing bytes after the datum" % (len(value) - 10 - buf.tell()))
        return entry["name"], datum
