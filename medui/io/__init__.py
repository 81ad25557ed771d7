"""Reading scans: DICOM, NIfTI and raster images from any mix of inputs.

The entry point is `medui.io.loader.load`; this package module imports nothing, so importing a
reader (or the decoder workers) never pulls in the others.
"""
