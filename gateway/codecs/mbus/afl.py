"""Authentication and fragmentation layer (AFL), EN 13757-7 clause 6 / OMS Vol. 2 (CI 0x90).

``CI 0x90, AFL.L, AFL.FCL (2), [AFL.MCL], [AFL.KI (2)], [AFL.MCR (4)], [AFL.MAC], [AFL.ML (2)]``

AFL.L counts the bytes after itself. The fragmentation control field FCL says which fields
follow; the message control field MCL gives the authentication type, which fixes the MAC
length. The MAC is ``CMAC(Kmac, MCL ‖ MCR ‖ [ML] ‖ everything from the next CI to the end)``,
truncated (EN 13757-7 clause 6.3.4, OMS Vol. 2 9.3.2): :func:`mac_input`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.errors import MBusFrameError, need_ci

CI_AFL = 0x90

# FCL bits, EN 13757-7 clause 6.3.2 (table "Fragmentation Control Field").
FCL_FRAGMENT_ID = 0x00FF
FCL_KEY_INFO = 0x0200  # KIP: AFL.KI present
FCL_MAC = 0x0400  # MACP: AFL.MAC present
FCL_COUNTER = 0x0800  # MCRP: AFL.MCR present
FCL_LENGTH = 0x1000  # MLP: AFL.ML present
FCL_CONTROL = 0x2000  # MCLP: AFL.MCL present
FCL_MORE_FRAGMENTS = 0x4000  # MF

# MCL bits, EN 13757-7 clause 6.3.3 (table "Message Control Field").
MCL_AUTH_TYPE = 0x0F
MCL_KEY_INFO_IN_MESSAGE = 0x10
MCL_COUNTER_IN_MESSAGE = 0x20
MCL_LENGTH_IN_MESSAGE = 0x40

#: Authentication types (AT in MCL): name and MAC length in bytes, EN 13757-7 table 9.
AUTHENTICATION_TYPES: dict[int, tuple[str, int]] = {
    0: ("none", 0),
    3: ("AES-CMAC-128 (2 bytes)", 2),
    4: ("AES-CMAC-128 (4 bytes)", 4),
    5: ("AES-CMAC-128 (8 bytes)", 8),
    6: ("AES-CMAC-128 (12 bytes)", 12),
    7: ("AES-CMAC-128 (16 bytes)", 16),
    8: ("AES-GMAC-128 (12 bytes)", 12),
}
CMAC_TYPES = frozenset({3, 4, 5, 6, 7})


@dataclass(frozen=True, slots=True)
class AuthenticationFragmentationLayer:
    """One AFL header. Byte fields are kept as transmitted (little-endian)."""

    length: int
    fragment_control: int
    message_control: int | None = None
    key_info: bytes | None = None
    message_counter: bytes | None = None
    mac: bytes | None = None
    message_length: bytes | None = None

    @property
    def size(self) -> int:
        """Bytes taken by the AFL, CI and AFL.L included."""
        return 2 + self.length

    @property
    def fragment_id(self) -> int:
        return self.fragment_control & FCL_FRAGMENT_ID

    @property
    def more_fragments(self) -> bool:
        return bool(self.fragment_control & FCL_MORE_FRAGMENTS)

    @property
    def authentication_type(self) -> int | None:
        return None if self.message_control is None else self.message_control & MCL_AUTH_TYPE

    @property
    def counter(self) -> int | None:
        return None if self.message_counter is None else int.from_bytes(self.message_counter, "little")

    def mac_input(self, rest: bytes) -> bytes:
        """The bytes the MAC covers: MCL ‖ MCR ‖ [ML] ‖ ``rest`` (from the next CI to the end)."""
        head = bytes([self.message_control or 0]) + (self.message_counter or b"")
        return head + (self.message_length or b"") + bytes(rest)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "ci": f"0x{CI_AFL:02X}",
            "length": self.length,
            "fcl": f"0x{self.fragment_control:04X}",
            "fragment_id": self.fragment_id,
            "more_fragments": self.more_fragments,
        }
        if self.message_control is not None:
            at = self.authentication_type
            out["mcl"] = f"0x{self.message_control:02X}"
            out["authentication"] = AUTHENTICATION_TYPES.get(at, (f"reserved ({at})", 0))[0]
        if self.key_info is not None:
            out["key_info"] = self.key_info.hex()
        if self.message_counter is not None:
            out["message_counter"] = self.counter
        if self.mac is not None:
            out["mac"] = self.mac.hex()
        if self.message_length is not None:
            out["message_length"] = int.from_bytes(self.message_length, "little")
        return out


def decode_afl(data: bytes, offset: int = 0) -> AuthenticationFragmentationLayer:
    """Decode the AFL starting (with CI 0x90) at ``data[offset]``; the fields must fill AFL.L."""
    need_ci(data, offset)
    if data[offset] != CI_AFL:
        raise MBusFrameError(f"CI 0x{data[offset]:02X} is not an AFL", offset=offset, field="CI")
    if len(data) - offset < 4:
        raise MBusFrameError("AFL header is truncated", offset=len(data), field="AFL.L")
    length = data[offset + 1]
    end = offset + 2 + length
    if end > len(data):
        raise MBusFrameError(f"AFL.L {length} runs past the frame's end", offset=offset + 1, field="AFL.L")
    fcl = int.from_bytes(data[offset + 2 : offset + 4], "little")
    pos = offset + 4
    fields: dict[str, bytes | int] = {}

    def take(name: str, count: int) -> bytes:
        nonlocal pos
        if pos + count > end:
            raise MBusFrameError(f"AFL.{name} runs past AFL.L ({length})", offset=pos, field=f"AFL.{name}")
        chunk = bytes(data[pos : pos + count])
        pos += count
        return chunk

    if fcl & FCL_CONTROL:
        fields["message_control"] = take("MCL", 1)[0]
    if fcl & FCL_KEY_INFO:
        fields["key_info"] = take("KI", 2)
    if fcl & FCL_COUNTER:
        fields["message_counter"] = take("MCR", 4)
    if fcl & FCL_MAC:
        at = int(fields.get("message_control", 0)) & MCL_AUTH_TYPE
        name, mac_length = AUTHENTICATION_TYPES.get(at, ("reserved", 0))
        if not mac_length:
            raise MBusFrameError(
                f"AFL says a MAC follows but authentication type {at} ({name}) has none",
                offset=offset + 4,
                field="AFL.MCL",
            )
        fields["mac"] = take("MAC", mac_length)
    if fcl & FCL_LENGTH:
        fields["message_length"] = take("ML", 2)
    if pos != end:
        raise MBusFrameError(
            f"AFL fields take {pos - offset - 2} bytes but AFL.L is {length}", offset=offset + 1, field="AFL.L"
        )
    return AuthenticationFragmentationLayer(length, fcl, **fields)  # type: ignore[arg-type]
