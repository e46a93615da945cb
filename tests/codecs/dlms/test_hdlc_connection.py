"""The HDLC link (IEC 62056-46 6.4.4): connection, negotiation, segmentation both ways, windows,
RR/RNR, DISC/DM/FRMR and sequence-number errors, replayed from recorded and hand-built frames."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError
from gateway.codecs.dlms.hdlc import (
    LLC_COMMAND,
    LLC_RESPONSE,
    Control,
    HdlcAddress,
    HdlcFrame,
    HdlcParameters,
    decode_frame,
)
from gateway.codecs.dlms.hdlc_connection import (
    CONNECTED,
    DISCONNECTED,
    FAILED,
    HdlcConnection,
    HdlcServerConnection,
    HdlcSettings,
)
from gateway.codecs.dlms.link_events import (
    ApduReceived,
    Connected,
    DataToSend,
    Disconnected,
    FrameRejected,
    NeedData,
    PeerBusy,
)
from tests.codecs.dlms.hdlc_vectors import (
    AARQ_NO_AUTH,
    RECORDED_AARE,
    RECORDED_SEGMENTED_ASSOCIATION,
    vector_frame,
)

CLIENT = HdlcAddress(16)
SERVER = HdlcAddress(1, 17, 2)
METER_17 = HdlcSettings(server_physical=17)


def events_after(conn, data: bytes = b"") -> list:
    """Feed ``data`` and collect events until the connection needs more."""
    conn.receive_data(data)
    out = []
    while not isinstance(event := conn.next_event(), NeedData):
        out.append(event)
    return out


def sent(events: list) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, DataToSend))


def from_server(control: Control, info: bytes = b"", segmented: bool = False) -> bytes:
    return HdlcFrame(CLIENT, SERVER, control, info, segmented).to_bytes()


def connected_client(settings: HdlcSettings = METER_17, ua_params: HdlcParameters | None = None) -> HdlcConnection:
    conn = HdlcConnection(settings)
    conn.connect()
    info = (ua_params or HdlcParameters()).to_info()
    [event] = events_after(conn, from_server(Control.unnumbered("UA"), info))
    assert isinstance(event, Connected)
    return conn


# --- recorded exchanges --------------------------------------------------------------------


def test_recorded_segmented_association_with_the_gurux_meter_replays_byte_for_byte():
    settings = HdlcSettings(server_physical=17, parameters=HdlcParameters(max_info_tx=16, max_info_rx=24))
    conn = HdlcConnection(settings)
    script = [(direction, bytes.fromhex(frame)) for direction, frame in RECORDED_SEGMENTED_ASSOCIATION]
    calls = {0: conn.connect, 2: lambda: conn.send_apdu(AARQ_NO_AUTH), 12: conn.disconnect}
    events = []
    outgoing = b""
    for step, (direction, frame) in enumerate(script):
        if step in calls:
            outgoing += calls[step]()
        if direction == ">":
            assert outgoing[: len(frame)] == frame, f"step {step}"
            outgoing = outgoing[len(frame) :]
        else:
            new = events_after(conn, frame)
            outgoing += sent(new)
            events += [e for e in new if not isinstance(e, DataToSend)]
    assert outgoing == b""
    assert events == [
        Connected(HdlcParameters(16, 24, 1, 1), SERVER),
        ApduReceived(RECORDED_AARE),
        Disconnected("UA"),
    ]
    assert conn.state == DISCONNECTED


def test_snrm_without_parameters_is_the_published_vector():
    assert HdlcConnection(METER_17).connect() == vector_frame("hdlc_snrm")


def test_ua_vector_parameters_are_bounded_by_the_default_proposal():
    conn = HdlcConnection(METER_17)
    conn.connect()
    assert events_after(conn, vector_frame("hdlc_ua_with_params")) == [Connected(HdlcParameters(128, 128, 1, 1), SERVER)]


def test_ua_vector_parameters_are_taken_when_the_proposal_is_larger():
    conn = HdlcConnection(HdlcSettings(server_physical=17, parameters=HdlcParameters(2030, 2030, 1, 1)))
    snrm = decode_frame(conn.connect())
    assert HdlcParameters.from_info(snrm.info) == HdlcParameters(2030, 2030, 1, 1)
    [event] = events_after(conn, vector_frame("hdlc_ua_with_params"))
    assert event.parameters == HdlcParameters(0x9A, 0x9A, 1, 1)
    assert conn.parameters == event.parameters


def test_aarq_and_aare_vectors_travel_as_single_i_frames():
    conn = connected_client()
    assert conn.send_apdu(AARQ_NO_AUTH) == vector_frame("hdlc_iframe_aarq")
    [event] = events_after(conn, vector_frame("hdlc_iframe_aare"))
    assert event == ApduReceived(decode_frame(vector_frame("hdlc_iframe_aare")).info[3:])


# --- segmentation and windows -------------------------------------------------------------


def test_long_apdu_is_cut_into_segments_with_the_s_bit_on_all_but_the_last():
    conn = connected_client(ua_params=HdlcParameters(max_info_rx=32))
    apdu = bytes(range(80))
    frames = [decode_frame(conn.send_apdu(apdu))]
    for nr in (1, 2):
        frames.append(decode_frame(sent(events_after(conn, from_server(Control.supervisory("RR", nr))))))
    assert [f.segmented for f in frames] == [True, True, False]
    assert [f.control.ns for f in frames] == [0, 1, 2]
    assert all(f.control.poll_final and len(f.info) <= 32 for f in frames)
    assert b"".join(f.info for f in frames) == LLC_COMMAND + apdu
    assert conn.sending is False


def test_a_window_of_two_sends_two_frames_and_polls_on_the_second():
    conn = connected_client(
        HdlcSettings(server_physical=17, parameters=HdlcParameters(window_tx=2)), HdlcParameters(max_info_rx=10, window_rx=2)
    )
    out = conn.send_apdu(bytes(37))  # 40 bytes with the LLC: four segments
    parser_frames = _split(out)
    assert [(f.control.ns, f.control.poll_final) for f in parser_frames] == [(0, False), (1, True)]
    next_window = _split(sent(events_after(conn, from_server(Control.supervisory("RR", 2)))))
    assert [(f.control.ns, f.control.poll_final, f.segmented) for f in next_window] == [(2, False, True), (3, True, False)]


def test_rr_acknowledging_part_of_a_window_makes_the_link_go_back_and_resend():
    conn = connected_client(
        HdlcSettings(server_physical=17, parameters=HdlcParameters(window_tx=3)), HdlcParameters(max_info_rx=10, window_rx=3)
    )
    first = _split(conn.send_apdu(bytes(40)))
    assert [f.control.ns for f in first] == [0, 1, 2]
    again = _split(sent(events_after(conn, from_server(Control.supervisory("RR", 1)))))
    assert [(f.control.ns, f.info) for f in again] == [(1, first[1].info), (2, first[2].info)]
    assert again[-1].control.poll_final


def test_segmented_reply_is_reassembled_answering_rr_to_each_polled_segment():
    conn = connected_client()
    conn.send_apdu(b"\xc0\x01")
    reply = LLC_RESPONSE + bytes(range(200))
    segments = [reply[i : i + 64] for i in range(0, len(reply), 64)]
    rrs = []
    events = []
    for ns, segment in enumerate(segments):
        last = ns == len(segments) - 1
        new = events_after(conn, from_server(Control.information(ns, 1), segment, segmented=not last))
        rrs += _split(sent(new))
        events += [e for e in new if not isinstance(e, DataToSend)]
    assert [(f.kind, f.control.nr, f.control.poll_final) for f in rrs] == [("RR", 1, True), ("RR", 2, True), ("RR", 3, True)]
    assert events == [ApduReceived(bytes(range(200)))]


def test_segments_without_the_poll_bit_wait_for_the_end_of_the_window():
    conn = connected_client(HdlcSettings(server_physical=17, parameters=HdlcParameters(window_rx=2)), HdlcParameters(window_tx=2))
    first = from_server(Control.information(0, 0, False), LLC_RESPONSE + b"a", segmented=True)
    second = from_server(Control.information(1, 0, True), b"b", segmented=True)
    assert events_after(conn, first) == []
    [rr] = events_after(conn, second)
    assert decode_frame(rr.data).control == Control.supervisory("RR", 2)


def test_rnr_holds_the_next_segments_until_a_poll_is_answered_with_rr():
    conn = connected_client(ua_params=HdlcParameters(max_info_rx=16))
    conn.send_apdu(bytes(40))
    assert events_after(conn, from_server(Control.supervisory("RNR", 1))) == [PeerBusy(1)]
    assert decode_frame(conn.poll()).control == Control.supervisory("RR", 0)
    [resume] = events_after(conn, from_server(Control.supervisory("RR", 1)))
    assert decode_frame(resume.data).control.ns == 1


def test_a_second_apdu_waits_for_the_first_to_be_acknowledged():
    conn = connected_client()
    assert conn.send_apdu(b"\x01")
    assert conn.send_apdu(b"\x02") == b""
    new = events_after(conn, from_server(Control.information(0, 1), LLC_RESPONSE + b"\x03"))
    assert new[0] == ApduReceived(b"\x03")
    queued = decode_frame(sent(new))
    assert (queued.control.ns, queued.control.nr, queued.info) == (1, 1, LLC_COMMAND + b"\x02")


# --- sequence numbers ------------------------------------------------------------------


def test_an_i_frame_out_of_sequence_is_reported_and_answered_with_the_expected_number():
    conn = connected_client()
    conn.send_apdu(b"\x01")
    conn.receive_data(from_server(Control.information(2, 1), LLC_RESPONSE + b"\x02"))
    with pytest.raises(DLMSFrameError, match="N\\(S\\) 2 received, 0 expected") as info:
        conn.next_event()
    assert info.value.field == "N(S)"
    [rr] = events_after(conn)
    assert decode_frame(rr.data).control == Control.supervisory("RR", 0)
    # The right frame still gets through afterwards.
    assert events_after(conn, from_server(Control.information(0, 1), LLC_RESPONSE + b"\x02")) == [ApduReceived(b"\x02")]
    assert conn.state == CONNECTED


def test_a_repeated_segment_is_dropped_and_acknowledged_again():
    conn = connected_client()
    segment = from_server(Control.information(0, 0), LLC_RESPONSE + b"part", segmented=True)
    events_after(conn, segment)
    [rr] = events_after(conn, segment)
    assert decode_frame(rr.data).control == Control.supervisory("RR", 1)
    assert conn.duplicate_frames == 1
    [done] = events_after(conn, from_server(Control.information(1, 0), b"-end"))
    assert done == ApduReceived(b"part-end")


def test_an_acknowledgement_of_frames_never_sent_breaks_the_link():
    conn = connected_client()
    conn.send_apdu(b"\x01")  # N(S) 0: only N(R) 0 or 1 make sense
    conn.receive_data(from_server(Control.supervisory("RR", 3)))
    with pytest.raises(DLMSFrameError, match="never sent") as info:
        conn.next_event()
    assert info.value.field == "N(R)"
    assert conn.state == FAILED
    with pytest.raises(DLMSError, match="failed"):
        conn.send_apdu(b"\x02")
    assert decode_frame(conn.connect()).kind == "SNRM"


def test_sequence_numbers_wrap_around_modulo_eight():
    conn = connected_client()
    for n in range(10):
        request = decode_frame(conn.send_apdu(bytes([n])))
        assert request.control.ns == n % 8
        reply = from_server(Control.information(n % 8, (n + 1) % 8), LLC_RESPONSE + bytes([n]))
        assert events_after(conn, reply) == [ApduReceived(bytes([n]))]


# --- unnumbered frames -------------------------------------------------------------------


def test_dm_to_a_snrm_means_the_meter_refused():
    conn = HdlcConnection(METER_17)
    conn.connect()
    assert events_after(conn, from_server(Control.unnumbered("DM"))) == [Disconnected("DM")]
    assert conn.state == DISCONNECTED


def test_disc_is_answered_with_ua_or_dm():
    conn = connected_client()
    assert decode_frame(conn.disconnect()).control == Control.unnumbered("DISC")
    assert events_after(conn, from_server(Control.unnumbered("UA"))) == [Disconnected("UA")]
    conn.disconnect()
    assert events_after(conn, from_server(Control.unnumbered("DM"))) == [Disconnected("DM")]


def test_frmr_is_reported_with_its_reason_bits():
    conn = connected_client()
    conn.send_apdu(b"\x01")
    [event] = events_after(conn, from_server(Control.unnumbered("FRMR"), bytes([0x10, 0x02, 0x09])))
    assert event == FrameRejected(0x10, ("W", "Z"), bytes([0x10, 0x02, 0x09]))
    assert conn.state == FAILED


def test_ui_frame_delivers_a_pushed_apdu():
    conn = connected_client()
    event = events_after(conn, from_server(Control.unnumbered("UI", False), LLC_RESPONSE + b"\x0f\x01"))
    assert event == [ApduReceived(b"\x0f\x01", unnumbered=True)]


def test_information_without_the_llc_header_is_rejected():
    conn = connected_client()
    conn.receive_data(from_server(Control.information(0, 0), b"\x61\x00"))
    with pytest.raises(DLMSFrameError) as info:
        conn.next_event()
    assert info.value.field == "LLC"


def test_frames_for_other_stations_and_our_own_echo_are_ignored():
    conn = HdlcConnection(METER_17)
    snrm = conn.connect()
    other = HdlcFrame(HdlcAddress(17), SERVER, Control.unnumbered("UA")).to_bytes()
    assert events_after(conn, snrm + other) == []
    assert conn.ignored_frames == 2


def test_broken_bytes_between_frames_raise_once_and_the_link_carries_on():
    conn = HdlcConnection(METER_17)
    conn.connect()
    ua = from_server(Control.unnumbered("UA"))
    broken = bytearray(ua)
    broken[-2] ^= 0xFF
    conn.receive_data(b"\x00\x13" + bytes(broken) + ua)
    with pytest.raises(DLMSFrameError, match="FCS"):
        conn.next_event()
    assert isinstance(conn.next_event(), Connected)


def test_sending_before_connecting_is_a_usage_error():
    with pytest.raises(DLMSError, match="disconnected"):
        HdlcConnection().send_apdu(b"\x01")


def test_settings_from_a_serial_number_use_four_byte_addressing():
    settings = HdlcSettings.for_serial_number(12345678)
    assert settings.server_address == HdlcAddress(1, 6678, 4)
    assert decode_frame(HdlcConnection(settings).connect()).destination == HdlcAddress(1, 6678, 4)


# --- the server side ---------------------------------------------------------------------


def test_server_answers_snrm_with_its_negotiated_parameters():
    server = HdlcServerConnection(HdlcSettings(server_physical=17, parameters=HdlcParameters(max_info_tx=256, max_info_rx=64)))
    events = events_after(server, vector_frame("hdlc_snrm"))
    ua = decode_frame(events[0].data)
    assert (ua.kind, ua.destination, ua.source) == ("UA", CLIENT, SERVER)
    assert HdlcParameters.from_info(ua.info) == HdlcParameters(128, 64, 1, 1)
    assert events[1] == Connected(HdlcParameters(128, 64, 1, 1), CLIENT)


def test_server_receives_the_aarq_vector_and_replies_with_the_aare_vector():
    server = HdlcServerConnection(METER_17)
    events_after(server, vector_frame("hdlc_snrm"))
    assert events_after(server, vector_frame("hdlc_iframe_aarq")) == [ApduReceived(AARQ_NO_AUTH)]
    aare = decode_frame(vector_frame("hdlc_iframe_aare")).info[3:]
    assert server.send_apdu(aare) == vector_frame("hdlc_iframe_aare")


def test_disconnected_server_answers_dm_to_polls_and_disc():
    server = HdlcServerConnection(METER_17)
    for frame in (vector_frame("hdlc_iframe_aarq"), HdlcFrame(SERVER, CLIENT, Control.unnumbered("DISC")).to_bytes()):
        [dm] = events_after(server, frame)
        assert decode_frame(dm.data).control == Control.unnumbered("DM")


def test_server_rejects_a_bad_acknowledgement_with_frmr_until_reset():
    server = HdlcServerConnection(METER_17)
    events_after(server, vector_frame("hdlc_snrm"))
    server.receive_data(HdlcFrame(SERVER, CLIENT, Control.supervisory("RR", 4)).to_bytes())
    with pytest.raises(DLMSFrameError, match="never sent"):
        server.next_event()
    [frmr] = events_after(server)
    rejected = decode_frame(frmr.data)
    assert rejected.kind == "FRMR" and rejected.info == bytes([0x91, 0x00, 0x08])
    [again] = events_after(server, HdlcFrame(SERVER, CLIENT, Control.supervisory("RR", 0)).to_bytes())
    assert again.data == frmr.data
    assert isinstance(events_after(server, vector_frame("hdlc_snrm"))[1], Connected)


def test_server_answers_an_idle_poll_with_rr():
    server = HdlcServerConnection(METER_17)
    events_after(server, vector_frame("hdlc_snrm"))
    [rr] = events_after(server, HdlcFrame(SERVER, CLIENT, Control.supervisory("RR", 0)).to_bytes())
    assert decode_frame(rr.data).control == Control.supervisory("RR", 0)


@settings(max_examples=60, deadline=None)
@given(
    client_params=st.builds(HdlcParameters, st.integers(8, 300), st.integers(8, 300), st.integers(1, 7), st.integers(1, 7)),
    server_params=st.builds(HdlcParameters, st.integers(8, 300), st.integers(8, 300), st.integers(1, 7), st.integers(1, 7)),
    apdus=st.lists(st.tuples(st.binary(min_size=1, max_size=900), st.binary(min_size=1, max_size=900)), min_size=1, max_size=3),
    chunk=st.integers(1, 64),
)
def test_client_and_server_carry_any_apdus_with_any_parameters_and_chunking(client_params, server_params, apdus, chunk):
    client = HdlcConnection(HdlcSettings(parameters=client_params))
    server = HdlcServerConnection(HdlcSettings(parameters=server_params))

    def deliver(data: bytes, to) -> list:
        """Move ``data`` in small chunks, then keep passing DataToSend back and forth."""
        got = []
        peer = {client: server, server: client}
        queue = [(data, to)]
        while queue:
            data, target = queue.pop(0)
            for i in range(0, len(data), chunk):
                for event in events_after(target, data[i : i + chunk]):
                    if isinstance(event, DataToSend):
                        queue.append((event.data, peer[target]))
                    else:
                        got.append((target, event))
        return got

    got = deliver(client.connect(), server)
    assert [type(e) for _, e in got] == [Connected, Connected]
    for request, response in apdus:
        assert deliver(client.send_apdu(request), server) == [(server, ApduReceived(request))]
        assert deliver(server.send_apdu(response), client) == [(client, ApduReceived(response))]
    assert deliver(client.disconnect(), server)[-1] == (client, Disconnected("UA"))
    assert server.state == DISCONNECTED


def _split(data: bytes) -> list[HdlcFrame]:
    from gateway.codecs.dlms.hdlc import HdlcParser

    parser = HdlcParser()
    parser.receive_data(data)
    frames = []
    while (frame := parser.next_frame()) is not None:
        frames.append(frame)
    assert parser.buffered == 0
    return frames


def test_a_ua_with_a_zero_window_is_refused():
    conn = HdlcConnection(METER_17)
    conn.connect()
    conn.receive_data(from_server(Control.unnumbered("UA"), HdlcParameters(window_rx=0).to_info()))
    with pytest.raises(DLMSFrameError, match="unusable") as info:
        conn.next_event()
    assert (info.value.field, conn.state) == ("parameters", FAILED)


def test_server_answers_dm_to_a_snrm_asking_for_zero_length_frames():
    server = HdlcServerConnection(METER_17)
    snrm = HdlcFrame(SERVER, CLIENT, Control.unnumbered("SNRM"), HdlcParameters(max_info_rx=0).to_info()).to_bytes()
    server.receive_data(snrm)
    with pytest.raises(DLMSFrameError, match="unusable"):
        server.next_event()
    [dm] = events_after(server)
    assert decode_frame(dm.data).control == Control.unnumbered("DM")
    assert server.state == DISCONNECTED


def test_clear_after_a_timeout_forgets_a_half_received_reply():
    conn = connected_client()
    conn.send_apdu(b"\xc0\x01")
    events_after(conn, from_server(Control.information(0, 1), LLC_RESPONSE + b"stale", segmented=True))
    conn.clear()
    conn.send_apdu(b"\xc0\x02")
    assert events_after(conn, from_server(Control.information(1, 2), LLC_RESPONSE + b"fresh")) == [ApduReceived(b"fresh")]
