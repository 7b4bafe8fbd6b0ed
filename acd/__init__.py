"""The ACD: work items, agents, skills, queues, routing, live state and the PBX (AMI) link."""
