"""The quick C-STORE response of a C-GET (medui.pacs.store_reply), against pynetdicom's own encoding,
on a real (unconnected) pynetdicom Association: what goes to its DUL queue is what would be sent."""

from __future__ import annotations

import io
import logging

import pynetdicom
import pytest
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext

from medui.pacs import store_reply


def _pynetdicom_pdvs(message_id: int, sop_class: str, sop_instance: str, status: int, context_id: int = 1,
                     max_pdu: int = 0) -> list[tuple[int, bytes]]:
    """What pynetdicom's `_c_store_scp` sends for the same response (its primitive, message and encoder)."""
    rsp = C_STORE()
    rsp.MessageID = message_id
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = status
    msg = C_STORE_RSP()
    msg.primitive_to_message(rsp)
    return [pdv for pdata in msg.encode_msg(context_id, max_pdu) for pdv in pdata.presentation_data_value_list]


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xC211])
@pytest.mark.parametrize("message_id", [1, 2, 65535])
@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.3.45", "2.25.1234567890123456789012345678901234567"])
def test_the_response_is_byte_for_byte_what_pynetdicom_encodes(status, message_id, sop_instance):
    # odd and even UID lengths (the padding), the statuses MedUI answers
    for sop_class in (CTImageStorage, MRImageStorage):
        ours = store_reply.LAST_COMMAND_FRAGMENT + store_reply.encode_response(message_id, sop_class, sop_instance,
                                                                               status)
        assert _pynetdicom_pdvs(message_id, sop_class, sop_instance, status) == [(1, ours)]


def test_the_pinned_pynetdicom_gets_the_quick_reply():
    # requirements.txt pins pynetdicom; a new release must be checked against this module (then add it to
    # SUPPORTED) or the C-GETs fall back to pynetdicom's slower path without anyone noticing
    assert store_reply.active(), (f"pynetdicom {pynetdicom.__version__} is not in store_reply.SUPPORTED "
                                  f"{store_reply.SUPPORTED}: compare Association._c_store_scp with it")


def _association(handler, acceptor_max_pdu: int = 0) -> Association:
    assoc = Association(AE(), "requestor")
    cx = PresentationContext()
    cx.context_id, cx.abstract_syntax, cx.transfer_syntax = 3, CTImageStorage, [ImplicitVRLittleEndian]
    cx._as_scu, cx._as_scp = False, True
    assoc._accepted_cx = {3: cx}
    assoc.acceptor.maximum_length = acceptor_max_pdu
    assoc.bind(evt.EVT_C_STORE, handler)
    assert store_reply.install(assoc)
    return assoc


def _request(sop_class: str = CTImageStorage, context_id: int = 3) -> C_STORE:
    req = C_STORE()
    req.MessageID = 7
    req.AffectedSOPClassUID = sop_class
    req.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    req.Priority = 2
    req.DataSet = io.BytesIO(b"\x08\x00\x16\x00")
    req._context_id = context_id
    return req


def _sent(assoc: Association) -> list[tuple[int, bytes]]:
    out = []
    while not assoc.dul.to_provider_queue.empty():
        pdata = assoc.dul.to_provider_queue.get()
        assert isinstance(pdata, P_DATA)
        out += pdata.presentation_data_value_list
    return out


def test_the_handler_sees_the_request_and_its_status_goes_back():
    seen = []

    def handler(event):
        seen.append((str(event.request.AffectedSOPInstanceUID), event.context.abstract_syntax))
        return 0xA700

    assoc = _association(handler)
    assoc._c_store_scp(_request())
    assert seen == [("1.2.826.0.1.3680043.8.498.1", CTImageStorage)]
    assert _sent(assoc) == _pynetdicom_pdvs(7, CTImageStorage, "1.2.826.0.1.3680043.8.498.1", 0xA700, 3)


def test_a_handler_that_raises_or_returns_no_code_is_answered_as_pynetdicom_does(caplog):
    def raises(event):
        raise RuntimeError("disk full")

    assoc = _association(raises)
    with caplog.at_level(logging.ERROR, logger="medui.pacs.store_reply"):
        assoc._c_store_scp(_request())
    assert _sent(assoc) == _pynetdicom_pdvs(7, CTImageStorage, "1.2.826.0.1.3680043.8.498.1", 0xC211, 3)
    assert "disk full" in caplog.text
    assoc = _association(lambda event: "ok")
    assoc._c_store_scp(_request())
    assert _sent(assoc) == _pynetdicom_pdvs(7, CTImageStorage, "1.2.826.0.1.3680043.8.498.1", 0xC002, 3)


def test_a_request_on_no_matching_context_goes_to_pynetdicom_which_refuses_it():
    called = []
    assoc = _association(lambda event: called.append(1) or 0)
    assoc._c_store_scp(_request(MRImageStorage))  # no accepted context for MR: pynetdicom answers 0x0122
    assert not called
    [(context_id, command)] = _sent(assoc)
    assert context_id == 1 and command == _pynetdicom_pdvs(7, MRImageStorage, "1.2.826.0.1.3680043.8.498.1",
                                                           0x0122)[0][1]


def test_a_peer_with_tiny_pdus_gets_the_response_in_pynetdicom_fragments():
    assoc = _association(lambda event: 0, acceptor_max_pdu=64)
    assoc._c_store_scp(_request())
    sent = _sent(assoc)
    assert len(sent) > 1
    assert sent == _pynetdicom_pdvs(7, CTImageStorage, "1.2.826.0.1.3680043.8.498.1", 0, 3, max_pdu=64)
