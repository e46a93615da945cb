"""A simulated DLMS/COSEM meter that demands HLS-GMAC and suite 0 ciphering (the codec's server
association with keys), reports its metrological identification (1-0:0.2.0 firmware
version, 1-0:0.2.8 firmware checksum) and takes new keys through its security setup's
global_key_transfer, unwrapping them with its master key (AES key wrap, RFC 3394): the new
keys hold from its next association, and its invocation counter starts again under them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.association import Authentication, SecuritySettings
from gateway.codecs.dlms.axdr import octet_string
from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import MemoryInvocationCounters, SecurityKeys
from gateway.codecs.dlms.server import ServerAssociation, ServerSettings
from gateway.codecs.dlms.services import ActionRequestNormal, ActionResult, GetRequestNormal
from tests.collectors.dlms_sim_meter import SimMeter

FIRMWARE_VERSION = Obis(1, 0, 0, 2, 0, 255)
FIRMWARE_CHECKSUM = Obis(1, 0, 0, 2, 8, 255)
SECURITY_SETUP = Obis(0, 0, 43, 0, 0, 255)
KEY_IDS = {0: "encryption_key", 2: "authentication_key"}
REJECTED_PERMANENT, NO_REASON_GIVEN = 1, 1  # AARE result, acse-service-user diagnostic


@dataclass
class SecuredMeter(SimMeter):
    keys: SecurityKeys = field(default=None, repr=False)  # type: ignore[assignment]
    kek: bytes = field(default=bytes(16), repr=False)
    system_title: bytes = b"SIM\x00\x00\x00\x00\x01"
    firmware_version: bytes = b"FW-1.2.3"
    firmware_checksum: bytes = bytes.fromhex("A1B2C3D4")
    associations: int = 0
    refused: int = 0
    staged: dict[str, bytes] = field(default_factory=dict, repr=False)
    counters: MemoryInvocationCounters = field(default_factory=MemoryInvocationCounters)

    def get(self, request: GetRequestNormal):
        a = request.attribute
        if (a.class_id, a.instance, a.attribute) == (1, FIRMWARE_VERSION, 2):
            return octet_string(self.firmware_version)
        if (a.class_id, a.instance, a.attribute) == (1, FIRMWARE_CHECKSUM, 2):
            return octet_string(self.firmware_checksum)
        return super().get(request)

    def action(self, request: ActionRequestNormal) -> ActionResult:
        m = request.method
        if (m.class_id, m.instance, m.method) == (64, SECURITY_SETUP, 2):
            self.actions.append((m.class_id, m.method))
            for item in request.parameters.value:
                key_id, wrapped = (element.value for element in item.value)
                self.staged[KEY_IDS[int(key_id)]] = aes_key_unwrap(self.kek, bytes(wrapped))
            return ActionResult(0)
        return super().action(request)

    def _answer(self, association: ServerAssociation, apdu: bytes) -> bytes:
        """As the meter answers; an AARQ it cannot decipher (another key) is rejected, as a
        meter does (Green Book: AARE rejected-permanent), not dropped."""
        try:
            return super()._answer(association, apdu)
        except DLMSSecurityError:
            request = decode_apdu(apdu)
            if not isinstance(request, acse.AARQ):
                raise
            self.refused += 1
            return acse.AARE(REJECTED_PERMANENT, acse.ACSE_SERVICE_USER, NO_REASON_GIVEN,
                             request.application_context_name, None).to_bytes()

    def association(self) -> ServerAssociation:
        settings = ServerSettings(Authentication.HIGH_GMAC, security=SecuritySettings(self.system_title, self.keys),
                                  ciphered=True)
        self.associations += 1
        return ServerAssociation(settings, self.counters)

    def connection_closed(self) -> None:
        self._take_staged_keys()

    def _take_staged_keys(self) -> None:
        """New keys hold from the next association, and the counter starts again."""
        if self.staged:
            self.keys = SecurityKeys(self.staged.get("encryption_key", self.keys.encryption_key),
                                     self.staged.get("authentication_key", self.keys.authentication_key))
            self.staged = {}
            self.counters = MemoryInvocationCounters()
