"""How anything is written: atomic outputs, folder locks, journaled commits, output names, the
transactional output set and manifests.
"""
