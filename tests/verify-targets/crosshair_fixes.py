"""CrossHair plugin (`crosshair check --extra_plugin`): a fix to its struct model.

CrossHair 0.0.113 models `struct.unpack_from(fmt, buf, offset)` as
`struct.unpack(fmt, buf[offset:])`, which raises "unpack requires a buffer of
N bytes" whenever the buffer is longer than the format, that is on every page
read in the codec. This replaces that patch with a faithful one. CrossHair
`exec`s a plugin inside a function, so everything lives in `_install`'s closure.
"""


def _install() -> None:
    import struct
    from operator import index

    from crosshair import core
    from crosshair.core import realize

    def unpack_from(fmt, /, buffer, offset=0):
        size = struct.calcsize(realize(fmt))
        offset = index(offset)
        length = len(buffer)
        start = offset + length if offset < 0 else offset
        if start < 0 or length - start < size:
            # CPython raises struct.error here too, never a short read.
            raise struct.error(f"unpack_from requires a buffer of at least {size} bytes")
        return struct.unpack(fmt, buffer[start : start + size])

    core._PATCH_REGISTRATIONS[struct.unpack_from] = unpack_from


_install()
