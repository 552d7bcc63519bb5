# include/linux/list.h and the page/pageblock helpers of include/linux/mm.h
# and include/linux/mmzone.h.

cdef extern from *:
    int __builtin_ctzl(unsigned long) nogil

cdef inline void INIT_LIST_HEAD(list_head *h) noexcept nogil:
    h.next = h
    h.prev = h

cdef inline bint list_empty(const list_head *h) noexcept nogil:
    return h.next == h

cdef inline void __list_add(list_head *new, list_head *prev, list_head *next) noexcept nogil:
    next.prev = new
    new.next = next
    new.prev = prev
    prev.next = new

cdef inline void list_add(list_head *new, list_head *head) noexcept nogil:
    __list_add(new, head, head.next)

cdef inline void list_add_tail(list_head *new, list_head *head) noexcept nogil:
    __list_add(new, head.prev, head)

cdef inline void list_del(list_head *entry) noexcept nogil:
    entry.next.prev = entry.prev
    entry.prev.next = entry.next
    entry.next = NULL
    entry.prev = NULL

cdef inline void list_move_tail(list_head *entry, list_head *head) noexcept nogil:
    entry.next.prev = entry.prev
    entry.prev.next = entry.next
    list_add_tail(entry, head)

cdef inline page *lru_to_page(list_head *entry) noexcept nogil:
    # container_of(entry, struct page, lru)
    return <page *>(<char *>entry - sizeof(unsigned long))

cdef inline unsigned long page_to_pfn(pglist_data *pgdat, page *p) noexcept nogil:
    return <unsigned long>(p - pgdat.mem_map)

cdef inline page *pfn_to_page(pglist_data *pgdat, unsigned long pfn) noexcept nogil:
    return pgdat.mem_map + pfn

cdef inline int get_pageblock_migratetype(pglist_data *pgdat, unsigned long pfn) noexcept nogil:
    return pgdat.pageblock_mt[pfn >> PAGEBLOCK_ORDER]

cdef inline void set_pageblock_migratetype(cpu_state *cs, pglist_data *pgdat, unsigned long pfn,
                                           int mt) noexcept nogil:
    cdef uint8_t *slot = &pgdat.pageblock_mt[pfn >> PAGEBLOCK_ORDER]
    if slot[0] != mt:
        slot[0] = <uint8_t>mt
        if cs != NULL:
            cs.item[<int>PAGEBLOCK_CHANGE] += 1

cdef inline bint is_migrate_cma(int mt) noexcept nogil:
    return mt == MIGRATE_CMA

cdef inline bint migratetype_is_mergeable(int mt) noexcept nogil:
    return mt < MIGRATE_PCPTYPES

cdef inline zone *page_zone(pglist_data *pgdat, unsigned long pfn) noexcept nogil:
    cdef uint8_t zi = pgdat.block_zone[pfn >> MAX_PAGE_ORDER]
    return NULL if zi == 0xff else &pgdat.node_zones[zi]
