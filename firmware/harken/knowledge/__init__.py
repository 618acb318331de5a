"""Knowledge packs: an operator's documents, indexed on the device and answered from (see docs/knowledge.md)."""
