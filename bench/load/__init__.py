"""Parts of the calls-per-core benchmark (bench/calls_per_core.py): marked RTP, a SIP load caller, a counting
Mediazen sink, the receive-only limit and the pyVoIP baseline."""
