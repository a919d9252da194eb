"""Errors raised when DICOM input cannot be used; their message is shown to users."""


class DicomInputError(ValueError):
    """A DICOM object is missing something we need or holds impossible values.

    The message names the object and the attribute (keyword and tag) so a
    physicist can find the problem in the file.
    """
