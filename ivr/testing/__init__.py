"""`ivr test`: scripted SIP callers for dialplans, written in YAML beside them (X.test.yaml for X.yaml)."""
