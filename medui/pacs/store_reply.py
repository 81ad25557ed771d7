"""The C-STORE responses of a C-GET, answered without pynetdicom's generic message path.

During a C-GET the PACS sends each instance as a C-STORE sub-operation on MedUI's association and
waits for its response before the next. pynetdicom (`Association._c_store_scp`) builds that response
as a validated primitive, converts it to a pydicom Dataset and encodes the command set twice (once
for its group length): 1.5 ms of Python per instance, 40% of the CPU of a C-GET on loopback, on the
cores the decoders need. The response is seven fixed elements; they are encoded here directly and
sent as one P-DATA, as pynetdicom sends them. `tests/test_pacs_store_reply.py` checks the bytes equal
pynetdicom's own encoding for the same values.

This replaces one private method, on the associations MedUI opens for C-GET only, and only on the
pynetdicom release it was written against (`SUPPORTED`); elsewhere pynetdicom's own method runs
unchanged. A request on a context that does not match goes to pynetdicom's method (it answers
0x0122), and a peer whose PDUs are too small for the response in one fragment gets it through
pynetdicom's message path. The handler must return a status code (MedUI's `dimse_get.Gate.stored`
does); pynetdicom also accepts a status Dataset, which this answers with 0xC002 instead. These
responses do not trigger pynetdicom's EVT_DIMSE_SENT (MedUI binds no handler to it)."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pynetdicom
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

LOG = logging.getLogger(__name__)
SUPPORTED = ("3.0.4",)  # pynetdicom releases whose `_c_store_scp` this was checked against (requirements.txt pins it)
C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
PROCESSING_FAILURE = 0xC211  # what pynetdicom answers when the handler raises
INVALID_STATUS = 0xC002  # ... and when it returns something that is not a status
LAST_COMMAND_FRAGMENT = b"\x03"  # message control header: command, last fragment


def active() -> bool:
    """Whether this pynetdicom is a release the quick reply was checked against."""
    return pynetdicom.__version__ in SUPPORTED


def _element(element: int, value: bytes) -> bytes:
    """One implicit VR little endian element of the command group (UI values padded with NUL)."""
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def encode_response(message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2), with its group length, as pynetdicom encodes it."""
    body = b"".join((
        _element(0x0002, sop_class_uid.encode("ascii")),
        _element(0x0100, struct.pack("<H", C_STORE_RSP)),
        _element(0x0120, struct.pack("<H", message_id)),
        _element(0x0800, struct.pack("<H", NO_DATA_SET)),
        _element(0x0900, struct.pack("<H", status)),
        _element(0x1000, sop_instance_uid.encode("ascii")),
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _generic(assoc: Association, req: Any, context_id: int, status: int) -> None:
    """The response through pynetdicom's message path (a PDU limit too small for one fragment)."""
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = req.MessageID
    rsp.AffectedSOPInstanceUID = req.AffectedSOPInstanceUID
    rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
    rsp.Status = status
    assoc.dimse.send_msg(rsp, context_id)


def _reply(assoc: Association, req: Any) -> None:
    """`Association._c_store_scp` for one request: the EVT_C_STORE handler's status, sent back."""
    context = assoc._accepted_cx.get(req._context_id)
    if context is None or not context.as_scp or context.abstract_syntax != req.AffectedSOPClassUID:
        type(assoc)._c_store_scp(assoc, req)  # no such context: pynetdicom answers 0x0122 and logs it
        return
    try:
        status = evt.trigger(assoc, evt.EVT_C_STORE, {"request": req, "context": context.as_tuple})
    except Exception:
        LOG.exception("the C-STORE handler raised; answering 0x%04X (processing failure)", PROCESSING_FAILURE)
        status = PROCESSING_FAILURE
    if not isinstance(status, int):  # MedUI's handlers return a code (pynetdicom: 0xC002 for neither code nor Dataset)
        LOG.error("the C-STORE handler returned %s, not a status code; answering 0x%04X", type(status).__name__,
                  INVALID_STATUS)
        status = INVALID_STATUS
    elif status not in STORAGE_SERVICE_CLASS_STATUS:
        LOG.warning("the C-STORE handler returned the unknown status 0x%04X; sent as it is", status)
    context_id = int(context.context_id or 0)  # accepted contexts always have one
    command = LAST_COMMAND_FRAGMENT + encode_response(int(req.MessageID), str(req.AffectedSOPClassUID),
                                                      str(req.AffectedSOPInstanceUID), status)
    limit = assoc.dimse.maximum_pdu_size
    if limit and len(command) + 6 > limit:  # the peer takes PDUs too small for one fragment: pynetdicom splits it
        _generic(assoc, req, context_id, status)
        return
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((context_id, command))
    assoc.dul.send_pdu(pdata)


def install(assoc: Association) -> bool:
    """Answer this association's C-STORE sub-operations with `_reply` (where `active()`); whether it did."""
    if not active():
        return False
    assoc._c_store_scp = lambda req: _reply(assoc, req)  # type: ignore[method-assign]
    return True
