"""What runs on a machine: workloads, migration, the seed-bug reproduction, SMP contention, trace replay and capture."""
