# One row of pcpemu.kernel.ftrace.EVENT_DTYPE (packed, as numpy lays it out), shared by
# the parser (_ftrace.pyx), which writes trace lines into such rows, and the core
# (_trace.pxi), which writes its own tracepoints into them.

cdef packed struct Event:
    uint8_t kind
    uint16_t cpu
    int64_t pfn
    int8_t order
    int8_t migratetype
    uint32_t gfp
    double timestamp
    int64_t line
    int8_t fallback_order
    int8_t fallback_migratetype
    int8_t percpu_refill
    int8_t change_ownership
    int8_t kswapd

_LAYOUT = (("kind", 0), ("cpu", 1), ("pfn", 3), ("order", 11), ("migratetype", 12), ("gfp", 13),
           ("timestamp", 17), ("line", 25), ("fallback_order", 33), ("fallback_migratetype", 34),
           ("percpu_refill", 35), ("change_ownership", 36), ("kswapd", 37))


def check_event_dtype(dtype):
    """Raise TypeError unless dtype lays its rows out as the C Event row."""
    if sizeof(Event) != dtype.itemsize or any(dtype.fields[n][1] != o for n, o in _LAYOUT):
        raise TypeError("the C event row does not match EVENT_DTYPE")
