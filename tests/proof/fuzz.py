"""Hypothesis strategies for any request message, built from its protobuf descriptor: strings that look like
resource names (of things that exist, and almost-names), random and huge unicode text, control characters,
planted secrets in the secret-bearing fields, integers at their edges, enums with unknown values, nested
messages, repeated fields and maps, and the well-known types (Timestamps and Durations out of range,
FieldMasks naming real and unreal fields); and, for the proof's sharper edges, forged page tokens and request
bytes that are not the request message at all."""
from __future__ import annotations

import base64
import datetime as dt
import json
import re

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from tests.proof.figures import FULL
from tests.proof.world import planted

F = FieldDescriptor
# fields that carry a secret: planted values go there, and none may come back in an error ("code": SetPassword's
# one-time code, a credential like a password)
SECRET_FIELDS = {"secret", "password", "initial_password", "new_password", "subject_token", "code"}
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


def weighted(*options):
    """One of `options`, (weight, strategy) pairs, in proportion to the weights (hypothesis's one_of keeps a
    strategy given twice once: repeating it does not weigh it)."""
    return st.sampled_from([strategy for weight, strategy in options for _ in range(weight)]).flatmap(lambda s: s)


def integers(lo: int, hi: int):
    edges = [v for v in (lo, hi, 0, -1, 1, 2**31 - 1, -2**31, 2**31, 1000, 1001, 10**9) if lo <= v <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(max(lo, -5), min(hi, 2000)))


def name_like(known: list[str]):
    """Resource names: real ones, real ones bent (a segment changed, cut, doubled, padded), invented ones."""
    invented = st.lists(st.tuples(st.sampled_from(COLLECTIONS), SEGMENTS), min_size=1, max_size=5).map(
        lambda parts: "/".join(f"{c}/{i}" for c, i in parts))
    options = [(1, invented)]
    if known:
        real = st.sampled_from(known)
        options += [(2, real), (1, st.tuples(real, SEGMENTS).map(lambda t: t[0].rsplit("/", 1)[0] + "/" + t[1])),
                    (1, st.tuples(real, st.sampled_from(["/", "//", "/..", " ", "\x00", "%2F", "/x"])).map(
                        lambda t: t[0] + t[1])),
                    (1, real.map(lambda n: n.upper())), (1, real.map(lambda n: n[: len(n) // 2]))]
    return weighted(*options)


def strings(field: FieldDescriptor, known: list[str]):
    huge = st.tuples(st.sampled_from("x\u00e9\u4e2d\U0001f600/"), st.integers(300, 30_000)).map(lambda t: t[0] * t[1])
    tricky = st.sampled_from(["", " ", "\x00", "\n", "\t", "\u202e", "'; DROP TABLE logon_data; --", "%s%s%n",
                              "../../etc/passwd", "null", "0", "-1", "9" * 30, "\\", "\"", "${jndi:x}", "\ud7ff"])
    options = [(1, TEXT), (1, tricky), (1, huge), (1, name_like(known))]
    if field.name in NAME_FIELDS and known:  # mostly names of things that exist, so calls get past the checks
        options = [(6, st.sampled_from(known)), (3, name_like(known)), (1, TEXT), (1, tricky), (1, huge)]
    if field.name in SECRET_FIELDS:
        options = [(3, st.builds(planted, st.just("fuzz"))), (1, TEXT), (1, huge), (1, tricky)]
    return weighted(*options).map(lambda s: "users/nobody" if PROTECTED.search(s) else s)


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
        return weighted((3, st.sampled_from(known_values)), (1, integers(-2**31, 2**31 - 1)))
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
        seconds = weighted((3, plausible), (1, integers(-2**63, 2**63 - 1)), (1, st.sampled_from(
            [-62135596801, -62135596800, 253402300799, 253402300800, 315537897599, 10**12])),
            (1, st.integers(-10**6, 10**7)))
        nanos = weighted((2, st.just(0)), (1, st.integers(0, 999_999_999)), (1, integers(-2**31, 2**31 - 1)),
                         (1, st.sampled_from([999_999_999, 10**9, -1])))
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
        return weighted((2, st.just(seed)), (1, special))
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
            fields[field.name] = weighted((2, st.just(ABSENT)), (1, generated))
        else:
            fields[field.name] = weighted((4, st.just(current)), (1, generated), (1, st.just(ABSENT)))
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
NESTED_TOKEN = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode()
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


# --- forged page tokens: services/kit/paging.py's shape, urlsafe base64 of {"a": [cursor...], "q": fingerprint} ---
OFFSETS = [dt.timezone(dt.timedelta(minutes=m)) for m in (0, -1439, 1439, 330, -300)]
BAD_TIMES = ["2024-13-01T00:00:00+00:00", "2024-02-30T00:00:00+00:00", "2024-01-01T24:00:00+00:00",
             "10000-01-01T00:00:00+00:00", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59.999999-23:59",
             "0001-01-01T00:00:00+05:00", "0000-01-01T00:00:00", "+12024-01-01", "2024-01-01T00:00:00+25:00",
             "2024-01-01T00:00:00.1234567891+00:00", "2024-W01-1", "T", "now", "1e10"]
# values of a cursor's own JSON type at the edges of what a database column holds (NUL and lone surrogates in
# text, integers past 32 and 64 bits, the first and last instants a datetime holds)
EDGE_CURSOR_STRINGS = ["", "\x00", "a\x00b", "\ud800", "\udfff\ud800", "x" * 1024, "x" * 1025,
                       "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:59:59-05:00",
                       "0001-01-01T00:00:00+05:00", "10000-01-01T00:00:00+00:00", "2024-01-01T00:00:00"]
EDGE_CURSOR_INTS = [0, -1, 2**31 - 1, 2**31, -2**31 - 1, 2**53 + 1, 2**63 - 1, -2**63, 2**63, -2**63 - 1]
CURSOR_TEXT = ["x" * 2500, "%", "'", "\\", "\u202e", "users/admin", "9" * 30]
CURSOR_INTS = st.one_of(st.sampled_from(EDGE_CURSOR_INTS + [2**64, 10**40]), st.integers())
CURSOR_STRINGS = st.one_of(st.sampled_from(EDGE_CURSOR_STRINGS + CURSOR_TEXT + BAD_TIMES), TEXT, st.datetimes(
    min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.sampled_from(OFFSETS)).map(dt.datetime.isoformat))
CURSOR_SCALARS = st.one_of(CURSOR_INTS, CURSOR_STRINGS, st.floats(), st.booleans(), st.none())
CURSOR_VALUES = st.recursive(CURSOR_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=10)
# JSON no cursor of the suite holds: nesting deeper than the parser's stack, numbers past any float or int64
ODD_JSON = ["[" * 1500 + "]" * 1500, '{"a": ' + "[" * 1000 + "]" * 1000 + ', "q": ""}', '{"a": [1e999], "q": ""}',
            '{"a": [' + "9" * 3000 + '], "q": ""}', '{"a": [NaN], "q": ""}', '{"a": [1], "a": [2], "q": ""}',
            "null", '"a"', "", "{", '{"a": [1], "q": "x"', "\x00"]


def encode_token(raw: bytes, pad: bool = False) -> str:
    token = base64.urlsafe_b64encode(raw).decode()
    return token if pad else token.rstrip("=")


def read_token(token: str) -> dict:
    """The body of a page token the suite issued."""
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _forged_cursor(real: list):
    """A cursor like `real`: its values replaced by others of their JSON type (so that many pass the check of
    their kind and reach the query), one replaced by any JSON value, one too few or too many; or any JSON."""
    same_type = st.tuples(*[st.one_of(st.just(v), CURSOR_STRINGS if isinstance(v, str) else CURSOR_INTS)
                            for v in real]).map(list)
    options = [(6, same_type), (1, st.lists(CURSOR_VALUES, max_size=4)), (1, CURSOR_VALUES), (1, st.just(real[:-1])),
               (1, st.just(real + real[-1:]))]
    if real:
        options.append((2, st.tuples(st.integers(0, len(real) - 1), CURSOR_VALUES).map(
            lambda t: real[:t[0]] + [t[1]] + real[t[0] + 1:])))
    return weighted(*options)


def edge_page_tokens(issued: str) -> list[str]:
    """Tokens like `issued` (its fingerprint kept) with one cursor value set to each edge value of its type."""
    body = read_token(issued)
    out = []
    for i, value in enumerate(body["a"]):
        for edge in EDGE_CURSOR_STRINGS if isinstance(value, str) else EDGE_CURSOR_INTS:
            cursor = body["a"][:i] + [edge] + body["a"][i + 1:]
            out.append(encode_token(json.dumps({"a": cursor, "q": body["q"]}).encode()))
    return out


def page_tokens(issued: list[str]):
    """(kind, page token) pairs for a request the tokens `issued` were issued for: random text, urlsafe base64
    of random bytes, and tokens of the suite's shape with forged cursors, mostly with the request's own
    fingerprint (taken from `issued`) so that they reach the check of the cursor's values."""
    bodies = [read_token(token) for token in issued]
    fingerprints = [(10, st.sampled_from([b["q"] for b in bodies]))] if bodies else []
    fingerprint = weighted(*fingerprints, (1, st.from_regex(r"[0-9a-f]{24}", fullmatch=True)), (1, CURSOR_VALUES))
    cursor = st.sampled_from([b["a"] for b in bodies] or [[]]).flatmap(_forged_cursor)
    body = weighted((10, st.fixed_dictionaries({"a": cursor, "q": fingerprint})), (1, CURSOR_VALUES),
                    (1, st.dictionaries(st.sampled_from(["a", "q", "x"]), CURSOR_VALUES, max_size=3)))
    shaped = st.tuples(body.map(lambda b: json.dumps(b).encode()), st.booleans()).map(lambda t: encode_token(*t))
    odd = st.sampled_from(ODD_JSON).map(lambda text: encode_token(text.encode()))
    text = st.one_of(TEXT, st.from_regex(r"[A-Za-z0-9_=-]{1,300}", fullmatch=True), st.just("A" * 5000))
    random_bytes = st.tuples(st.binary(max_size=3000), st.booleans()).map(lambda t: encode_token(*t))
    return weighted((1, st.tuples(st.just("random text"), text)), (1, st.tuples(st.just("random bytes"), random_bytes)),
                    (4, st.tuples(st.just("forged cursor"), shaped)), (1, st.tuples(st.just("forged cursor"), odd)))


# --- bytes that are not the request message ---------------------------------------------------------------------
BAD_UTF8 = (b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"ok\x80", b"\xf4\x90\x80\x80")
LENGTH = 2  # the wire type of length-delimited fields
# a length-delimited field 1 claiming 100 bytes and holding 3, one whose length overflows, a varint that never
# ends, fixed-size values cut short, a group never closed
TRUNCATED = (b"\x0a\x64abc", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x08\xff", b"\x09\x01\x02",
             b"\x0d\x01", b"\x0b")
FIELD_ZERO = (b"\x00\x00", b"\x02\x00", b"\x05\x00\x00\x00\x00", b"\x0e", b"\x0c")  # and wire types 6, 7, end-group


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | LENGTH) + _varint(len(payload)) + payload


def _bad_strings(descriptor: Descriptor, depth: int = 0) -> list[bytes]:
    """For each string field of `descriptor` (and of its messages and maps, two levels down): that field, on the
    wire, holding invalid UTF-8."""
    out = []
    for i, field in enumerate(descriptor.fields):
        if field.type == F.TYPE_STRING:
            out.append(_length_delimited(field.number, BAD_UTF8[(i + depth) % len(BAD_UTF8)]))
        elif field.message_type is not None and depth < 2:
            out += [_length_delimited(field.number, inner) for inner in _bad_strings(field.message_type, depth + 1)]
    return out


def _strings_of(msg):
    """The non-empty values of `msg`'s singular string fields, then those of its singular messages."""
    nested = []
    for field, value in msg.ListFields():
        if field.type == F.TYPE_STRING and not field.is_repeated and value:
            yield value
        elif field.message_type is not None and not field.is_repeated:
            nested.append(value)
    for inner in nested:
        yield from (v for f, v in inner.ListFields() if f.type == F.TYPE_STRING and not f.is_repeated and v)


def _string_replaced(msg) -> bytes | None:
    """`msg` on the wire with its first string value made invalid UTF-8 (its length unchanged), or None when it
    has no string value."""
    raw = next(iter(_strings_of(msg)), "").encode()
    return msg.SerializeToString().replace(raw, b"\xff" + raw[1:], 1) if raw else None


def random_bytes(rng, valid: bytes) -> bytes:
    """Random bytes: of any length up to 200, a valid message (`valid`) with a random tail, or with one of its
    bytes changed."""
    choice = rng.randrange(3) if valid else 0
    if choice == 0:
        return rng.randbytes(rng.randrange(201))
    if choice == 1:
        return valid + rng.randbytes(rng.randrange(1, 41))
    at = rng.randrange(len(valid))
    return valid[:at] + bytes([rng.randrange(256)]) + valid[at + 1:]


def undecodable(descriptor: Descriptor, valid: bytes, others: list) -> list[tuple[str, bytes]]:
    """(kind, bytes) that are not a `descriptor` message: a valid one (`valid`, may be b"") followed by a string
    field holding invalid UTF-8, a truncated field, field number 0 or an invalid wire type; `valid` cut short;
    and messages of other types (`others`) with a string field made invalid UTF-8."""
    out = [("invalid UTF-8", valid + bad) for bad in _bad_strings(descriptor)]
    out += [("truncated", valid + cut) for cut in TRUNCATED] + ([("truncated", valid[:-1])] if valid else [])
    out += [("field number 0", valid + tag) for tag in FIELD_ZERO]
    out += [("another type", data) for data in map(_string_replaced, others) if data is not None]
    return out
