"""Hypothesis strategies for any request message, built from its protobuf descriptor: strings that look like
resource names (of things that exist, and almost-names), random and huge unicode text, control characters,
planted secrets in the secret-bearing fields, integers at their edges, enums with unknown values, nested
messages, repeated fields and maps, and the well-known types (Timestamps and Durations out of range,
FieldMasks naming real and unreal fields)."""
from __future__ import annotations

import datetime as dt
import re

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from tests.proof.figures import FULL
from tests.proof.world import planted

F = FieldDescriptor
SECRET_FIELDS = {"secret", "password", "initial_password", "new_password", "subject_token"}
NAME_FIELDS = {"name", "parent", "system", "incident", "connection", "connection_type", "user", "customer", "processor",
               "engineer", "service_account", "restricted_incident", "logon_data", "actor"}
MAX_DEPTH = 3
# Never aim generated requests at the suite's own principals (the platform admin, the service accounts): a
# password set on them would end the sessions every other part of the suite runs on.
PROTECTED = re.compile(r"users/(admin|svc-)|^(admin|svc-[a-z]+)$")
INT_RANGES = {
    F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1), F.TYPE_SFIXED32: (-2**31, 2**31 - 1),
    F.TYPE_INT64: (-2**63, 2**63 - 1), F.TYPE_SINT64: (-2**63, 2**63 - 1), F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1), F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
SEGMENTS = st.one_of(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True), st.from_regex(r"[0-9]{1,18}",
                     fullmatch=True), st.from_regex(r"[A-Z][A-Z0-9_]{0,30}", fullmatch=True), TEXT)
COLLECTIONS = ("customers", "systems", "logonData", "incidents", "connections", "connectionSetups",
               "restrictedViews", "users", "connectionTypes", "logEvents")


def integers(lo: int, hi: int):
    edges = [v for v in (lo, hi, 0, -1, 1, 2**31 - 1, -2**31, 2**31, 1000, 1001, 10**9) if lo <= v <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(max(lo, -5), min(hi, 2000)))


def name_like(known: list[str]):
    """Resource names: real ones, real ones bent (a segment changed, cut, doubled, padded), invented ones."""
    invented = st.lists(st.tuples(st.sampled_from(COLLECTIONS), SEGMENTS), min_size=1, max_size=5).map(
        lambda parts: "/".join(f"{c}/{i}" for c, i in parts))
    options = [invented]
    if known:
        real = st.sampled_from(known)
        options += [real, real, st.tuples(real, SEGMENTS).map(lambda t: t[0].rsplit("/", 1)[0] + "/" + t[1]),
                    st.tuples(real, st.sampled_from(["/", "//", "/..", " ", "\x00", "%2F", "/x"])).map(
                        lambda t: t[0] + t[1]),
                    real.map(lambda n: n.upper()), real.map(lambda n: n[: len(n) // 2])]
    return st.one_of(*options)


def strings(field: FieldDescriptor, known: list[str]):
    huge = st.tuples(st.sampled_from("x\u00e9\u4e2d\U0001f600/"), st.integers(300, 30_000)).map(lambda t: t[0] * t[1])
    tricky = st.sampled_from(["", " ", "\x00", "\n", "\t", "\u202e", "'; DROP TABLE logon_data; --", "%s%s%n",
                              "../../etc/passwd", "null", "0", "-1", "9" * 30, "\\", "\"", "${jndi:x}", "\ud7ff"])
    options = [TEXT, tricky, huge, name_like(known)]
    if field.name in NAME_FIELDS and known:  # mostly names of things that exist, so calls get past the checks
        options = [st.sampled_from(known)] * 6 + [name_like(known)] * 2 + options
    if field.name in SECRET_FIELDS:
        options = [st.builds(planted, st.just("fuzz"))] * 3 + [TEXT, huge, tricky]
    return st.one_of(*options).map(lambda s: "users/nobody" if PROTECTED.search(s) else s)


def scalar(field: FieldDescriptor, known: list[str]):
    t = field.type
    if t == F.TYPE_STRING:
        return strings(field, known)
    if t == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.integers(1000, 300_000).map(lambda n: b"\xff" * n),
                         st.just(b""))
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_ENUM:
        known_values = [v.number for v in field.enum_type.values]
        return st.one_of(*[st.sampled_from(known_values)] * 3, integers(-2**31, 2**31 - 1))
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == F.TYPE_FLOAT else 64)
    if t in INT_RANGES:
        return integers(*INT_RANGES[t])
    raise NotImplementedError(f"field type {t} of {field.full_name}")


def well_known(descriptor: Descriptor, parent: Descriptor | None):
    name = descriptor.full_name
    cls = message_factory.GetMessageClass(descriptor)
    if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        now = int(dt.datetime.now(dt.timezone.utc).timestamp())
        plausible = st.integers(now - 86_400, now + 100 * 86_400) if name.endswith("Timestamp") else \
            st.integers(1, 400 * 86_400)
        seconds = st.one_of(plausible, plausible, plausible, integers(-2**63, 2**63 - 1), st.sampled_from(
            [-62135596801, -62135596800, 253402300799, 253402300800, 315537897599, 10**12]),
            st.integers(-10**6, 10**7))
        nanos = st.one_of(st.just(0), st.just(0), st.integers(0, 999_999_999), integers(-2**31, 2**31 - 1),
                          st.sampled_from([999_999_999, 10**9, -1]))
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)
    if name == "google.protobuf.FieldMask":
        real = [f.name for f in parent.fields] if parent is not None else []
        for f in (parent.fields if parent is not None else ()):
            if f.message_type is not None and not f.message_type.full_name.startswith("google."):
                real += [g.name for g in f.message_type.fields] + [f"{f.name}.{g.name}" for g in f.message_type.fields]
        path = st.one_of(st.sampled_from(real or ["x"]), TEXT)
        return st.lists(path, max_size=6).map(lambda paths: cls(paths=paths))
    return None


ABSENT = object()


def _seed_value(seed, field: FieldDescriptor):
    """The seed's value of `field` (a list, a dict, a message or a scalar), or ABSENT when it is not set."""
    if seed is None:
        return ABSENT
    value = getattr(seed, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return dict(value) if value else ABSENT
    if field.is_repeated:
        return list(value) if value else ABSENT
    if field.message_type is not None:
        return value if seed.HasField(field.name) else ABSENT
    return value if value != field.default_value else ABSENT


def message(descriptor: Descriptor, known: list[str], depth: int = 0, parent: Descriptor | None = None, seed=None):
    """A strategy for instances of `descriptor`'s message class. Without `seed` any field is set or not; with a
    valid `seed` request, each field mostly keeps the seed's value and is otherwise replaced or cleared — so
    that most generated requests get past the first checks and reach the code behind them."""
    special = well_known(descriptor, parent)
    if special is not None and seed is None:
        return special
    cls = message_factory.GetMessageClass(descriptor)
    if special is not None:
        return st.one_of(st.just(seed), st.just(seed), special)
    if depth >= MAX_DEPTH:
        return st.just(cls())
    fields = {}
    for field in descriptor.fields:
        current = _seed_value(seed, field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, value_f = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            generated = st.dictionaries(scalar(key_f, known), scalar(value_f, known), max_size=6)
        elif field.message_type is not None:
            sub = current if current is not ABSENT and not field.is_repeated else None
            element = st.deferred(lambda f=field, sub=sub: message(f.message_type, known, depth + 1, descriptor, sub))
            generated = st.lists(element, max_size=4) if field.is_repeated else element
        else:
            element = scalar(field, known)
            generated = st.lists(element, max_size=4) if field.is_repeated else element
        if current is ABSENT:
            fields[field.name] = st.one_of(st.just(ABSENT), st.just(ABSENT), generated)
        else:
            fields[field.name] = st.one_of(*[st.just(current)] * 4, generated, st.just(ABSENT))
    return st.fixed_dictionaries(fields).map(lambda values: build(cls, values))


def build(cls, values: dict):
    msg = cls()
    for name, value in values.items():
        if value is ABSENT:
            continue
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(msg, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.update(value)
        elif field.is_repeated:
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


# --- a fixed corpus of edge values, one field at a time --------------------------------------------------------
NESTED_TOKEN = __import__("base64").urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode()
EDGE_STRINGS = ["x" * 1_000_000, "\x00", "\u202e\U0001f600", "../" * 50, "%" * 1000] if FULL else ["\x00", "x" * 5000]
EDGE_INTS = [2**31 - 1, -2**31, -1] if FULL else [2**31 - 1, -1]
EDGE_TIMES = [(2**62, 0), (-2**62, 0), (253402300800, 0), (-62135596801, 0), (1_700_000_000, 10**9),
              (1_700_000_000, -1), (315537897599, 999_999_999)] if FULL else [(2**62, 0), (253402300800, 0)]


def edge_cases(seed) -> list:
    """Copies of `seed` with one field (also inside its nested messages) set to an edge value each."""
    out = []

    def visit(msg, path: list[str]):
        for field in msg.DESCRIPTOR.fields:
            if field.is_repeated:
                if field.type == F.TYPE_STRING:
                    out.append((path + [field.name], ["x"] * 2000))
                continue
            if field.message_type is not None:
                name = field.message_type.full_name
                if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
                    out.extend((path + [field.name], ("time", s, n)) for s, n in EDGE_TIMES)
                elif len(path) < 2 and not name.startswith("google."):
                    visit(getattr(msg, field.name), path + [field.name])
            elif field.type == F.TYPE_STRING:
                values = [NESTED_TOKEN] if field.name == "page_token" else []
                out.extend((path + [field.name], v) for v in values + EDGE_STRINGS)
            elif field.type == F.TYPE_BYTES:
                out.append((path + [field.name], b"\xff" * 300_000))
            elif field.type in INT_RANGES or field.type == F.TYPE_ENUM:
                out.extend((path + [field.name], v) for v in EDGE_INTS + ([999] if field.type == F.TYPE_ENUM else []))

    visit(seed, [])
    cases = []
    for path, value in out:
        copy = type(seed)()
        copy.CopyFrom(seed)
        target = copy
        for part in path[:-1]:
            target = getattr(target, part)
        if isinstance(value, tuple) and value and value[0] == "time":
            getattr(target, path[-1]).seconds, getattr(target, path[-1]).nanos = value[1], value[2]
        elif isinstance(value, list):
            del getattr(target, path[-1])[:]
            getattr(target, path[-1]).extend(value)
        else:
            setattr(target, path[-1], value)
        cases.append(copy)
    return cases
