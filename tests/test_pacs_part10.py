"""The File Meta Information MedUI writes for an instance received by C-STORE (medui.pacs.part10)."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLossless
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from medui.pacs.part10 import file_meta, part10


def _pydicom_meta(sop_class: str, sop_instance: str, syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_instance
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = PYNETDICOM_IMPLEMENTATION_VERSION
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_file_meta_info(out, meta)
    return out.getvalue()


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGLossless])
@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.3.45", "2.25.1234567890123456789012345678901234567"])
def test_meta_is_byte_for_byte_what_pydicom_writes(syntax, sop_instance):
    # odd and even UID lengths (the padding), short and long transfer syntaxes
    assert file_meta(CTImageStorage, sop_instance, syntax) == _pydicom_meta(CTImageStorage, sop_instance, syntax)


def test_a_received_data_set_becomes_a_file_pydicom_reads():
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    body = DicomBytesIO()  # the data set alone, as a C-STORE carries it (explicit VR little endian)
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, source)
    data = part10(source.SOPClassUID, source.SOPInstanceUID, source.file_meta.TransferSyntaxUID, body.getvalue())
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.file_meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
    assert back.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert back.PatientName == source.PatientName and (back.pixel_array == source.pixel_array).all()
