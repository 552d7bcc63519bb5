# The pcp cachelines a fast-path operation touches: each access to struct
# per_cpu_pages records its line in cpu_state.touched; the operation's end
# files the count in cl_hist. The kernel only pays for these lines; pcpemu
# counts them so that a layout change shows up as a number.

cdef inline void touch(cpu_state *cs, pglist_data *pgdat, per_cpu_pages *pcp,
                       const void *addr) noexcept nogil:
    # Record the cacheline of struct per_cpu_pages that addr lies on.
    cdef size_t line = (<const char *>addr - <const char *>pcp) >> pgdat.cacheline_shift
    cs.touched |= (<uint64_t>1) << (line & 63)

cdef inline void pcp_op_begin(cpu_state *cs) noexcept nogil:
    cs.touched = 0

cdef inline int nr_lines(uint64_t bits) noexcept nogil:
    return pcpemu_popcount(bits)

cdef inline void pcp_op_end(cpu_state *cs, int op) noexcept nogil:
    cs.cl_hist[op][nr_lines(cs.touched)] += 1
