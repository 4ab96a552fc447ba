"""The smart meter gateway (TR-03109), partitioned.

Partitions are modules with narrow interfaces; which run in which process
is configuration. One gateway service hosts many gateway instances, each
with its own registry, store and logs (a folder per instance).

- ``registry``: which meters belong to the gateway (keys, TAFs, consumer, EMT);
- ``processing``: measurement processing (CRC, decrypt, verify, replay, plausibility);
- ``store``: SQLite in WAL mode; a reading is accepted once its transaction commits;
- ``tariffs``: TAF1, TAF2, TAF6, TAF7 and the per-EMT delivery queue;
- ``logs``: system, consumer and calibration logs, hash-chained and signed;
- ``observer``: integrity of the partitions against a signed manifest;
- ``downloader``: signed, newer firmware bundles with rollback;
- ``lmn_wireless`` / ``lmn_wired``: the LMN driver partitions;
- ``service``: the bus API and the ingest pipeline of all instances.
"""
