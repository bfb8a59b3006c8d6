"""The one exception family of uservlm: callers catch UservlmError and log its message."""


class UservlmError(Exception):
    """Base class: the message says what went wrong and, where it can, what to do about it."""


class ImageConversionError(UservlmError):
    """A sensor_msgs/Image could not be turned into pixels (bad encoding, size, step, data)."""


class ModelLoadError(UservlmError):
    """A model file is missing, corrupt or does not match its manifest."""


class ConfigError(UservlmError):
    """A parameter or configuration value is out of range or inconsistent."""
