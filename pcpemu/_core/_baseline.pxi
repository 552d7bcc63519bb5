# The speed baseline for bench/: a bare loop that only moves struct page
# mirrors between a 14-list per_cpu_pages and one free list, driven by the same
# op stream as Allocator.run. No counters, no watermarks, no tuning.

def bare_pcp_loop(ops, Py_ssize_t nr_pages, int64_t[::1] slots):
    """Run an op stream's allocs and frees through a bare pcp; returns nothing."""
    cdef const uint8_t[::1] raw = ops.view(np.uint8).reshape(-1)
    cdef const pcpemu_op *op = <const pcpemu_op *>&raw[0]
    cdef Py_ssize_t n = len(ops), i
    cdef page *mem = <page *>malloc(nr_pages * sizeof(page))
    cdef per_cpu_pages *pcp
    cdef list_head free_list
    cdef list_head *lst
    cdef page *p
    cdef int j, pindex
    if mem == NULL or posix_memalign(<void **>&pcp, 64, pcp_alloc_size(14, 64)) != 0:
        free(mem)
        raise_error(PE_NOMEM, "bare_pcp_loop")
    with nogil:
        INIT_LIST_HEAD(&free_list)
        for j in range(14):
            INIT_LIST_HEAD(&pcp.lists[j])
        pcp.count = 0
        for i in range(nr_pages):
            list_add_tail(&mem[i].lru, &free_list)
        for i in range(n):
            pindex = 3 * op[i].order + ((op[i].gfp & (GFP_RECLAIMABLE | GFP_MOVABLE)) >> 3) \
                if op[i].order <= 3 else 12 + ((op[i].gfp & GFP_MOVABLE) >> 3)
            lst = &pcp.lists[pindex]
            if op[i].op == OP_ALLOC:
                if list_empty(lst):
                    for j in range(63):
                        if list_empty(&free_list):
                            break
                        p = lru_to_page(free_list.next)
                        list_del(&p.lru)
                        list_add_tail(&p.lru, lst)
                        pcp.count += 1
                p = lru_to_page(lst.next)
                list_del(&p.lru)
                pcp.count -= 1
                slots[op[i].slot] = p - mem
            else:
                p = mem + slots[op[i].slot]
                list_add(&p.lru, lst)
                pcp.count += 1
                if pcp.count >= 512:
                    for j in range(63):
                        p = lru_to_page(lst.prev)
                        list_del(&p.lru)
                        list_add(&p.lru, &free_list)
                        pcp.count -= 1
    free(mem)
    free(pcp)
