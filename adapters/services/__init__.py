"""Real PostgreSQL and Apache Kafka on a bare machine, as ordinary loopback processes.

Used by the test fixtures and by cluster mode on machines without Docker. Each service
installs what is missing, starts, reports and stops, and every step is idempotent: a
second ``up`` reuses the cluster, the jars and the running process that are already there.
"""
