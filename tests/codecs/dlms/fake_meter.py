"""A scripted DLMS server for the association tests: answers AARQ, HLS pass 3, GET (with
blocks or general-block-transfer), SET and ACTION (with blocks), RLRQ, built from the codec's
APDU classes and security functions. Test-only: it checks what a client sends and records it."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.axdr import Data, DataType, decode_data, encode_length
from gateway.codecs.dlms.security import (
    SecurityKeys,
    check_hls_gmac,
    cipher_apdu,
    decipher_apdu,
    hls_gmac,
)
from gateway.codecs.dlms.services import (
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithPblock,
    ActionResult,
    DataAccessResult,
    DataBlock,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
)
from gateway.codecs.dlms.xdlms import (
    CipheredApdu,
    GeneralBlockTransfer,
    GeneralGloCiphering,
    InitiateRequest,
    InitiateResponse,
)

GREEN_KEYS = SecurityKeys(bytes(range(16)), bytes(range(0xD0, 0xE0)))
METER_TITLE = bytes.fromhex("4D4D4D0000BC614E")
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")


@dataclass
class FakeMeter:
    objects: dict = field(default_factory=dict)  # (class, obis, attribute) -> Data
    password: bytes | None = None
    hls: bool = False
    ciphered: bool = False
    keys: SecurityKeys = GREEN_KEYS
    system_title: bytes = METER_TITLE
    max_pdu: int = 0x400
    conformance: int = 0x00FE1F
    block_size: int | None = None  # split GET answers into blocks of this size
    gbt_size: int | None = None  # ... or into general-block-transfer blocks
    general: bool = False  # answer with general-glo-ciphering
    counter: int = 100
    stoc: bytes = b"P6wRJ21F"
    reject: tuple[int, int] | None = None  # (result, diagnostic)
    wrong_ctos: bool = False
    return_blocks: int | None = None  # split ACTION return data into pblocks of this size
    received: list = field(default_factory=list)
    client_title: bytes | None = None
    dedicated: bytes | None = None
    _blocks: list = field(default_factory=list)
    _incoming: bytearray = field(default_factory=bytearray)
    _pending: object = None

    def handle(self, raw: bytes) -> bytes:
        apdu = decode_apdu(raw)
        if isinstance(apdu, acse.AARQ):
            return self._aarq(apdu)
        if isinstance(apdu, acse.RLRQ):
            return acse.RLRE(0).to_bytes()
        if isinstance(apdu, GeneralBlockTransfer):
            block = self._blocks.pop(0)
            return block
        ciphered = isinstance(apdu, (CipheredApdu, GeneralGloCiphering))
        if ciphered:
            plain = decipher_apdu(apdu, keys=self.keys, system_title=self.client_title,
                                  dedicated_key=self.dedicated).apdu
            apdu = decode_apdu(plain)
        elif self.ciphered:
            raise AssertionError("plaintext request in a ciphered association")
        self.received.append(apdu)
        return self._wrap(self._answer(apdu))

    # --- association -----------------------------------------------------------------------

    def _aarq(self, aarq: acse.AARQ) -> bytes:
        self.client_title = aarq.calling_ap_title
        initiate = aarq.user_information
        if isinstance(initiate, CipheredApdu):
            initiate = decode_apdu(decipher_apdu(initiate, keys=self.keys, system_title=self.client_title).apdu)
        assert isinstance(initiate, InitiateRequest)
        self.dedicated = initiate.dedicated_key
        self.aarq = aarq
        response = InitiateResponse(self.conformance & initiate.proposed_conformance, self.max_pdu)
        user = response
        if self.ciphered:
            user = cipher_apdu(response.to_bytes(), keys=self.keys, system_title=self.system_title,
                               invocation_counter=self._count())
        if self.reject:
            return acse.AARE(self.reject[0], 1, self.reject[1], aarq.application_context_name).to_bytes()
        if self.password is not None:
            given = aarq.calling_authentication_value
            if given is None or given.value != self.password:
                return acse.AARE(1, 1, 13, aarq.application_context_name).to_bytes()
        if self.hls:
            return acse.AARE(0, 1, acse.AUTHENTICATION_REQUIRED, aarq.application_context_name, user,
                             self.system_title, aarq.mechanism_name,
                             acse.AuthenticationValue(self.stoc), acse.ACSE_REQUIREMENTS_AUTHENTICATION).to_bytes()
        return acse.AARE(0, 1, 0, aarq.application_context_name, user, self.system_title).to_bytes()

    def _count(self) -> int:
        self.counter += 1
        return self.counter

    def _wrap(self, apdu) -> bytes:
        raw = apdu.to_bytes()
        if self.ciphered:
            raw = cipher_apdu(raw, keys=self.keys, system_title=self.system_title, invocation_counter=self._count(),
                              general=self.general).to_bytes()
        if self.gbt_size and len(raw) > self.gbt_size:
            chunks = [raw[i : i + self.gbt_size] for i in range(0, len(raw), self.gbt_size)]
            # Streaming set, as gurux does: the client acknowledges anyway (its window is 1).
            blocks = [GeneralBlockTransfer(n, 0, chunk, last_block=n == len(chunks), streaming=n < len(chunks),
                                           window=1).to_bytes()
                      for n, chunk in enumerate(chunks, 1)]
            self._blocks = blocks[1:]
            return blocks[0]
        return raw

    # --- services ------------------------------------------------------------------------------

    def _answer(self, apdu):
        if isinstance(apdu, ActionRequestNormal) and apdu.method.class_id == 15:
            return self._hls_pass_3(apdu)
        if isinstance(apdu, GetRequestNormal):
            value = self.objects.get((apdu.attribute.class_id, str(apdu.attribute.instance), apdu.attribute.attribute))
            if value is None:
                return GetResponseNormal(DataAccessResult(4), apdu.invoke)
            if self.block_size:
                raw = value.to_bytes()
                self._pending = [raw[i : i + self.block_size] for i in range(0, len(raw), self.block_size)]
                return self._next_get_block(1, apdu.invoke)
            return GetResponseNormal(value, apdu.invoke)
        if isinstance(apdu, GetRequestNext):
            return self._next_get_block(apdu.block_number + 1, apdu.invoke)
        if isinstance(apdu, GetRequestWithList):
            results = tuple(
                self.objects.get((i.attribute.class_id, str(i.attribute.instance), i.attribute.attribute),
                                 DataAccessResult(4))
                for i in apdu.attributes
            )
            if self.block_size:
                raw = encode_length(len(results)) + b"".join(
                    b"\x01" + bytes((r.code,)) if isinstance(r, DataAccessResult) else b"\x00" + r.to_bytes()
                    for r in results)
                self._pending = [raw[i : i + self.block_size] for i in range(0, len(raw), self.block_size)]
                return self._next_get_block(1, apdu.invoke)
            return GetResponseWithList(results, apdu.invoke)
        if isinstance(apdu, SetRequestNormal):
            self.objects[(apdu.attribute.class_id, str(apdu.attribute.instance), apdu.attribute.attribute)] = \
                apdu.value
            return SetResponseNormal(DataAccessResult(0), apdu.invoke)
        if isinstance(apdu, (SetRequestWithFirstDatablock, SetRequestWithDatablock)):
            if isinstance(apdu, SetRequestWithFirstDatablock):
                self._pending = apdu.attribute
                self._incoming = bytearray()
            self._incoming += apdu.block.raw_data
            if not apdu.block.last_block:
                return SetResponseDatablock(apdu.block.block_number, apdu.invoke)
            attribute = self._pending
            self.objects[(attribute.class_id, str(attribute.instance), attribute.attribute)] = \
                decode_data(bytes(self._incoming))
            return SetResponseLastDatablock(DataAccessResult(0), apdu.block.block_number, apdu.invoke)
        if isinstance(apdu, (ActionRequestWithFirstPblock, ActionRequestWithPblock)):
            if isinstance(apdu, ActionRequestWithFirstPblock):
                self._incoming = bytearray()
            self._incoming += apdu.block.raw_data
            if not apdu.block.last_block:
                return ActionResponseNextPblock(apdu.block.block_number, apdu.invoke)
            return ActionResponseNormal(ActionResult(0), decode_data(bytes(self._incoming)), apdu.invoke)
        if isinstance(apdu, ActionRequestNormal):
            if self.return_blocks and apdu.parameters is not None:
                raw = apdu.parameters.to_bytes()
                self._pending = [raw[i : i + self.return_blocks] for i in range(0, len(raw), self.return_blocks)]
                return self._next_action_block(1, apdu.invoke)
            return ActionResponseNormal(ActionResult(0), apdu.parameters, apdu.invoke)
        if isinstance(apdu, ActionRequestNextPblock):
            return self._next_action_block(apdu.block_number + 1, apdu.invoke)
        raise AssertionError(f"the fake meter does not answer {apdu!r}")

    def _next_get_block(self, number: int, invoke):
        chunk = self._pending[number - 1]
        return GetResponseWithDatablock(number == len(self._pending), number, chunk, invoke)

    def _next_action_block(self, number: int, invoke):
        chunk = self._pending[number - 1]
        return ActionResponseWithPblock(DataBlock(number == len(self._pending), number, chunk), invoke)

    def _hls_pass_3(self, apdu: ActionRequestNormal):
        assert apdu.method.method == 1 and apdu.parameters.type is DataType.OCTET_STRING
        check_hls_gmac(apdu.parameters.value, self.stoc, keys=self.keys, system_title=self.client_title)
        ctos = self.aarq.calling_authentication_value.value
        if self.wrong_ctos:
            ctos = b"not the challenge"
        answer = hls_gmac(ctos, keys=self.keys, system_title=self.system_title, invocation_counter=self._count())
        return ActionResponseNormal(ActionResult(0), Data(DataType.OCTET_STRING, answer), apdu.invoke)
