"""What goes wrong in publishing, each error with a message that says what to do."""


class HubError(RuntimeError):
    """A problem with staging, validating or uploading, with a message that says what to do."""


class ValidationError(HubError):
    """The staged folder is not fit to upload."""
