"""DLMS/COSEM security suite 0: AES-128-GCM ciphering and HLS-GMAC (Green Book 9.2.7).

Ciphered content = security control (SC) ‖ invocation counter (IC, 4 bytes) ‖ payload:

============================  ===================================  =====================
SC (suite 0, bits 4/5)        payload                              GCM inputs
============================  ===================================  =====================
0x10 authentication only      plaintext ‖ tag (12)                 AAD = SC ‖ AK ‖ plaintext
0x20 encryption only          ciphertext                           (no tag, no AAD)
0x30 authenticated+encrypted  ciphertext ‖ tag (12)                AAD = SC ‖ AK
============================  ===================================  =====================

IV = sender's system title (8) ‖ IC (4). Bit 6 of SC selects the key set (0 = unicast,
1 = broadcast), bit 7 compression (not supported, refused). The tag is always checked:
any mismatch raises :class:`DLMSSecurityError`.

Replay protection: :func:`decipher_apdu` takes the last invocation counter accepted from
that sender and refuses one that is not above it. Keeping counters across restarts is the
caller's job, through :class:`InvocationCounters` (the collector backs it with the store;
:class:`MemoryInvocationCounters` serves tests).

Keys are ``bytes`` and never appear in ``repr`` or error messages.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Protocol, Union

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.codecs.dlms.xdlms import (
    CIPHERED_FORMS,
    CipheredApdu,
    GeneralDedCiphering,
    GeneralGloCiphering,
)

# Security control byte, Green Book 9.2.7.2.4 (Table "Security control byte").
SC_SUITE_MASK = 0x0F
SC_AUTHENTICATION = 0x10
SC_ENCRYPTION = 0x20
SC_BROADCAST_KEY = 0x40
SC_COMPRESSION = 0x80
AUTHENTICATION_ONLY = SC_AUTHENTICATION
ENCRYPTION_ONLY = SC_ENCRYPTION
AUTHENTICATED_ENCRYPTION = SC_AUTHENTICATION | SC_ENCRYPTION

SUITE_0 = 0
KEY_SIZE = 16
TAG_SIZE = 12
SYSTEM_TITLE_SIZE = 8
MAX_INVOCATION_COUNTER = 0xFFFFFFFF
#: Bytes a service-specific ciphered APDU adds at most (tag, 3-byte length, SC, IC, GCM tag).
CIPHERING_OVERHEAD = 1 + 3 + 1 + 4 + TAG_SIZE
#: ... and general-glo-ciphering (adds the counted 8-byte system title).
GENERAL_CIPHERING_OVERHEAD = CIPHERING_OVERHEAD + 1 + SYSTEM_TITLE_SIZE


@dataclass(frozen=True, slots=True)
class SecurityKeys:
    """The global keys of one client-server pair: encryption (unicast), authentication, and
    optionally the broadcast encryption key. Never shown in ``repr``."""

    encryption_key: bytes = field(repr=False)
    authentication_key: bytes = field(repr=False)
    broadcast_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("encryption_key", "authentication_key", "broadcast_key"):
            key = getattr(self, name)
            if key is not None and (not isinstance(key, bytes) or len(key) != KEY_SIZE):
                raise ValueError(f"{name} must be {KEY_SIZE} bytes (AES-128)")


def _check_header(security_control: int, system_title: bytes, invocation_counter: int) -> None:
    suite = security_control & SC_SUITE_MASK
    if suite != SUITE_0:
        raise DLMSSecurityError(f"security suite {suite} is not supported (only suite 0)", field="security-control")
    if security_control & SC_COMPRESSION:
        raise DLMSSecurityError("compressed ciphered content is not supported", field="security-control")
    if len(system_title) != SYSTEM_TITLE_SIZE:
        raise DLMSSecurityError(f"system title is {len(system_title)} bytes, not 8", field="system-title")
    if not 0 <= invocation_counter <= MAX_INVOCATION_COUNTER:
        raise DLMSSecurityError("invocation counter out of range", field="invocation-counter")


def _iv(system_title: bytes, invocation_counter: int) -> bytes:
    return system_title + invocation_counter.to_bytes(4, "big")


def _inputs(security_control: int, system_title: bytes, invocation_counter: int,
            authentication_key: bytes) -> tuple[bytes, bytes, int]:
    """IV, the AAD prefix SC ‖ AK, and the protection bits of one ciphering."""
    _check_header(security_control, system_title, invocation_counter)
    aad = bytes((security_control,)) + authentication_key
    return _iv(system_title, invocation_counter), aad, security_control & AUTHENTICATED_ENCRYPTION


def _gmac(key: bytes, iv: bytes, aad: bytes) -> bytes:
    return AESGCM(key).encrypt(iv, b"", aad)[:TAG_SIZE]


def encrypt(
    plaintext: bytes,
    *,
    security_control: int,
    system_title: bytes,
    invocation_counter: int,
    key: bytes,
    authentication_key: bytes,
) -> bytes:
    """The payload (after SC ‖ IC) protecting ``plaintext`` as ``security_control`` says."""
    iv, aad, mode = _inputs(security_control, system_title, invocation_counter, authentication_key)
    if mode == AUTHENTICATED_ENCRYPTION:
        return AESGCM(key).encrypt(iv, plaintext, aad)[: len(plaintext) + TAG_SIZE]
    if mode == AUTHENTICATION_ONLY:
        return plaintext + _gmac(key, iv, aad + plaintext)
    if mode == ENCRYPTION_ONLY:
        return _ctr(key, iv, plaintext)
    return plaintext


def decrypt(
    payload: bytes,
    *,
    security_control: int,
    system_title: bytes,
    invocation_counter: int,
    key: bytes,
    authentication_key: bytes,
) -> bytes:
    """The plaintext of ``payload``; raises :class:`DLMSSecurityError` on a bad tag."""
    iv, aad, mode = _inputs(security_control, system_title, invocation_counter, authentication_key)
    if mode & SC_AUTHENTICATION and len(payload) < TAG_SIZE:
        raise DLMSSecurityError("ciphered content shorter than its authentication tag", field="ciphered-content")
    if mode == AUTHENTICATED_ENCRYPTION:
        ciphertext, tag = payload[:-TAG_SIZE], payload[-TAG_SIZE:]
        # AESGCM only checks 16-byte tags, and the Cipher API that takes 12-byte ones costs
        # four times as much per APDU. GCM's keystream is the same for one IV in both
        # directions, so enciphering the ciphertext yields the plaintext, and enciphering
        # that gives the tag the sender computed (NIST SP 800-38D 7.1/7.2). The plaintext
        # is returned only after the tag has been checked.
        gcm = AESGCM(key)
        plaintext = gcm.encrypt(iv, ciphertext, aad)[: len(ciphertext)]
        if not hmac.compare_digest(gcm.encrypt(iv, plaintext, aad)[len(ciphertext):][:TAG_SIZE], tag):
            raise DLMSSecurityError("authentication tag does not match (wrong key or altered APDU)",
                                    field="authentication-tag")
        return plaintext
    if mode == AUTHENTICATION_ONLY:
        plaintext, tag = payload[:-TAG_SIZE], payload[-TAG_SIZE:]
        if not hmac.compare_digest(tag, _gmac(key, iv, aad + plaintext)):
            raise DLMSSecurityError("authentication tag does not match (wrong key or altered APDU)",
                                    field="authentication-tag")
        return plaintext
    if mode == ENCRYPTION_ONLY:
        return _ctr(key, iv, payload)
    return payload


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    # GCM without its tag is AES-CTR starting at counter block J0 + 1 = IV ‖ 00000002
    # (NIST SP 800-38D 7.1), which is what encryption-only sends.
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
    return encryptor.update(data) + encryptor.finalize()


# --- APDUs ------------------------------------------------------------------------------

Ciphered = Union[CipheredApdu, GeneralGloCiphering, GeneralDedCiphering]


@dataclass(frozen=True, slots=True)
class Deciphered:
    """The plaintext APDU and the security header it came with."""

    apdu: bytes
    system_title: bytes
    security_control: int
    invocation_counter: int
    dedicated: bool


def cipher_apdu(
    apdu: bytes,
    *,
    keys: SecurityKeys,
    system_title: bytes,
    invocation_counter: int,
    security_control: int = AUTHENTICATED_ENCRYPTION,
    dedicated_key: bytes | None = None,
    general: bool = False,
) -> Ciphered:
    """Cipher one plaintext xDLMS APDU.

    Service-specific (``glo-``/``ded-`` by the APDU's tag) unless ``general``, then
    general-glo-/general-ded-ciphering carrying ``system_title``. ``dedicated_key`` selects
    the ded- forms. ``system_title`` and ``invocation_counter`` are the sender's."""
    if security_control & SC_BROADCAST_KEY:
        if keys.broadcast_key is None:
            raise DLMSSecurityError("the broadcast key set is selected but no broadcast key is configured")
        key = keys.broadcast_key
    else:
        key = keys.encryption_key if dedicated_key is None else dedicated_key
    payload = encrypt(
        apdu,
        security_control=security_control,
        system_title=system_title,
        invocation_counter=invocation_counter,
        key=key,
        authentication_key=keys.authentication_key,
    )
    if general:
        cls = GeneralGloCiphering if dedicated_key is None else GeneralDedCiphering
        return cls(system_title, security_control, invocation_counter, payload)
    forms = CIPHERED_FORMS.get(apdu[0]) if apdu else None
    if forms is None:
        raise ValueError(f"APDU 0x{apdu[0] if apdu else 0:02X} has no service-specific ciphered form")
    return CipheredApdu(forms[1] if dedicated_key is not None else forms[0], security_control, invocation_counter,
                        payload)


def decipher_apdu(
    apdu: Ciphered,
    *,
    keys: SecurityKeys,
    system_title: bytes | None = None,
    dedicated_key: bytes | None = None,
    last_counter: int | None = None,
    required: int = SC_AUTHENTICATION,
) -> Deciphered:
    """Check and decipher one ciphered APDU.

    ``system_title`` is the sender's (service-specific APDUs do not carry it; for the
    general forms it must match the one carried, when given). ``last_counter`` is the last
    invocation counter accepted from this sender under this key: a counter not above it is
    refused as a replay. ``required`` are the SC protection bits that must be present
    (authentication by default). The tag is checked before anything is returned."""
    carried = getattr(apdu, "system_title", None)
    if carried is not None:
        if system_title is not None and carried != system_title:
            raise DLMSSecurityError(f"system title {carried.hex()} is not the peer's {system_title.hex()}",
                                    field="system-title")
        system_title = carried
    if system_title is None:
        raise DLMSSecurityError("the sender's system title is unknown", field="system-title")
    sc = apdu.security_control
    if sc & required != required:
        raise DLMSSecurityError(f"security control 0x{sc:02X} lacks the required protection 0x{required:02X}",
                                field="security-control")
    counter = apdu.invocation_counter
    if last_counter is not None and counter <= last_counter:
        raise DLMSSecurityError(f"invocation counter {counter} is not above the last accepted {last_counter} "
                                "(replayed APDU)", field="invocation-counter")
    if sc & SC_BROADCAST_KEY:
        key = keys.broadcast_key
        if key is None:
            raise DLMSSecurityError("APDU ciphered with the broadcast key, none configured", field="security-control")
    elif apdu.dedicated:
        key = dedicated_key
        if key is None:
            raise DLMSSecurityError("ded- APDU without a dedicated key", field="tag")
    else:
        key = keys.encryption_key
    plaintext = decrypt(
        apdu.ciphertext,
        security_control=sc,
        system_title=system_title,
        invocation_counter=counter,
        key=key,
        authentication_key=keys.authentication_key,
    )
    return Deciphered(plaintext, system_title, sc, counter, apdu.dedicated)


class CipheringContext:
    """One side of a ciphered association (client or server): ciphers what it sends under its
    own system title and next invocation counter, deciphers what the peer sends and checks
    its tag, its protection and its counter (global key: against ``counters``; dedicated
    key: against the last one seen in this association, the key being new each time).

    ``security_control`` is what this side applies, and the protection it demands of the
    peer; ``general`` selects general-glo/ded-ciphering over the service-specific APDUs;
    ``peer_title`` is learnt from the AARQ/AARE; ``dedicated_key`` from the InitiateRequest."""

    def __init__(
        self,
        keys: SecurityKeys,
        own_title: bytes,
        counters: InvocationCounters,
        *,
        security_control: int = AUTHENTICATED_ENCRYPTION,
        general: bool = False,
        dedicated_key: bytes | None = None,
    ) -> None:
        self.keys = keys
        self.own_title = own_title
        self.counters = counters
        self.security_control = security_control
        self.general = general
        self.dedicated_key = dedicated_key
        self.peer_title: bytes | None = None
        self._dedicated_incoming: int | None = None

    def __repr__(self) -> str:
        return f"CipheringContext(own_title={self.own_title.hex()}, peer_title={(self.peer_title or b'').hex()})"

    @property
    def overhead(self) -> int:
        """The most bytes ciphering adds to an APDU."""
        return GENERAL_CIPHERING_OVERHEAD if self.general else CIPHERING_OVERHEAD

    def cipher(self, apdu: bytes, *, dedicated: bool = False, general: bool | None = None) -> Ciphered:
        """Cipher one plaintext APDU with the next invocation counter (the dedicated key
        when ``dedicated`` and one is set)."""
        return cipher_apdu(
            apdu,
            keys=self.keys,
            system_title=self.own_title,
            invocation_counter=self.counters.next_outgoing(self.own_title),
            security_control=self.security_control,
            dedicated_key=self.dedicated_key if dedicated else None,
            general=self.general if general is None else general,
        )

    def decipher(self, apdu: Ciphered) -> bytes:
        """The plaintext of an APDU from the peer, after every check."""
        if isinstance(apdu, CipheredApdu) and self.peer_title is None:
            raise DLMSSecurityError("ciphered APDU from a peer whose system title is unknown", field="tag")
        if apdu.dedicated:
            last = self._dedicated_incoming
        else:
            last = self.counters.last_incoming(getattr(apdu, "system_title", self.peer_title))
        required = self.security_control & AUTHENTICATED_ENCRYPTION or SC_AUTHENTICATION
        result = decipher_apdu(apdu, keys=self.keys, system_title=self.peer_title, dedicated_key=self.dedicated_key,
                               last_counter=last, required=required)
        if apdu.dedicated:
            self._dedicated_incoming = result.invocation_counter
        else:
            self.counters.accept_incoming(result.system_title, result.invocation_counter)
        return result.apdu


# --- HLS-GMAC ---------------------------------------------------------------------------

HLS_SECURITY_CONTROL = AUTHENTICATION_ONLY
HLS_RESPONSE_SIZE = 1 + 4 + TAG_SIZE


def hls_gmac(
    challenge: bytes,
    *,
    keys: SecurityKeys,
    system_title: bytes,
    invocation_counter: int,
    security_control: int = HLS_SECURITY_CONTROL,
) -> bytes:
    """f(challenge) of HLS mechanism 5 (Green Book 9.2.7.4, pass 3 and 4):
    SC ‖ IC ‖ GMAC(SC ‖ AK ‖ challenge) with IV = own system title ‖ IC."""
    _check_header(security_control, system_title, invocation_counter)
    tag = _gmac(
        keys.encryption_key,
        _iv(system_title, invocation_counter),
        bytes((security_control,)) + keys.authentication_key + challenge,
    )
    return bytes((security_control,)) + invocation_counter.to_bytes(4, "big") + tag


def check_hls_gmac(
    response: bytes,
    challenge: bytes,
    *,
    keys: SecurityKeys,
    system_title: bytes,
    last_counter: int | None = None,
) -> int:
    """Check the peer's f(challenge) (its system title, our challenge); returns its
    invocation counter. Raises :class:`DLMSSecurityError` when it does not match."""
    if len(response) != HLS_RESPONSE_SIZE:
        raise DLMSSecurityError(f"HLS-GMAC response is {len(response)} bytes, not {HLS_RESPONSE_SIZE}",
                                field="authentication-value")
    security_control = response[0]
    if not security_control & SC_AUTHENTICATION:
        raise DLMSSecurityError(f"HLS-GMAC response security control 0x{security_control:02X} is not authenticated",
                                field="security-control")
    counter = int.from_bytes(response[1:5], "big")
    if last_counter is not None and counter <= last_counter:
        raise DLMSSecurityError(f"HLS-GMAC invocation counter {counter} is not above the last accepted {last_counter}",
                                field="invocation-counter")
    expected = hls_gmac(challenge, keys=keys, system_title=system_title, invocation_counter=counter,
                        security_control=security_control)
    if not hmac.compare_digest(expected, response):
        raise DLMSSecurityError("HLS-GMAC response does not match: the peer does not hold the keys",
                                field="authentication-value")
    return counter


# --- invocation counters ----------------------------------------------------------------


class InvocationCounters(Protocol):
    """Where invocation counters live between associations (and restarts).

    Counters belong to a system title (the sender's) under the current global keys; after a
    key change the caller starts them afresh."""

    def next_outgoing(self, system_title: bytes) -> int:
        """Reserve and return the counter for the next APDU sent under ``system_title``.
        It must be durable before it is returned: a counter is never used twice."""

    def last_incoming(self, system_title: bytes) -> int | None:
        """The highest counter accepted from ``system_title``, or ``None`` for none yet."""

    def accept_incoming(self, system_title: bytes, counter: int) -> None:
        """Record that an APDU from ``system_title`` with ``counter`` passed its check."""


class MemoryInvocationCounters:
    """Invocation counters in memory (tests, simulators). ``outgoing`` gives the next counter
    to use per system title; a title not given starts at 1 (peers such as dlms-cosem take 0
    for "nothing received yet" and refuse a first counter of 0)."""

    def __init__(self, outgoing: dict[bytes, int] | None = None, incoming: dict[bytes, int] | None = None) -> None:
        self._outgoing = dict(outgoing or {})
        self._incoming = dict(incoming or {})

    def next_outgoing(self, system_title: bytes) -> int:
        counter = self._outgoing.get(system_title, 1)
        if counter > MAX_INVOCATION_COUNTER:
            raise DLMSSecurityError("invocation counter exhausted: a new key is needed", field="invocation-counter")
        self._outgoing[system_title] = counter + 1
        return counter

    def last_incoming(self, system_title: bytes) -> int | None:
        return self._incoming.get(system_title)

    def accept_incoming(self, system_title: bytes, counter: int) -> None:
        if counter > self._incoming.get(system_title, -1):
            self._incoming[system_title] = counter
