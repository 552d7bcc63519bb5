# zone->lock (include/linux/spinlock.h) and its accounting: every acquisition
# is counted per CPU and per call site, with the pages moved under it.
# Unlike the kernel, a lock taken by the single-threaded executor is a plain
# flag: nothing else runs, so a trylock fails only when a test or a modelled
# remote drain holds the lock on purpose. With pgdat.threaded set (real
# threads, pcpemu.smp) the locks are real spinlocks; the branch is predictable.

cdef inline void spin_lock_zone(cpu_state *cs, pglist_data *pgdat, zone *z, int site) noexcept nogil:
    cdef unsigned long spins
    if pgdat.threaded:
        spins = pcpemu_spin_lock(&z.lock.locked)
        if spins:
            cs.item[<int>ZONE_LOCK_CONTENDED] += 1
            cs.item[<int>ZONE_LOCK_SPINS] += spins
    else:
        z.lock.locked = 1
    cs.item[<int>ZONE_LOCK] += 1
    cs.lock_site[site] += 1

cdef inline void spin_unlock_zone(zone *z) noexcept nogil:
    # A release store: a plain store on x86, a barrier for the compiler.
    pcpemu_spin_unlock(&z.lock.locked)

cdef inline void count_locked_pages(cpu_state *cs, int site, long nr) noexcept nogil:
    cs.item[<int>ZONE_LOCK_PAGES] += nr
    cs.lock_site_pages[site] += nr


cdef inline void lockdep_assert_held(zone *z, const char *fn) noexcept nogil:
    # lockdep_assert_held(&zone->lock): the "__" buddy functions run under
    # zone->lock in the kernel; PCPEMU_DEBUG builds abort when one does not.
    pcpemu_assert_locked(&z.lock.locked, fn)
