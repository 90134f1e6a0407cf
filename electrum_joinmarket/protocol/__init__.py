"""Protocol primitives of the JoinMarket wire: nick keys and message signatures, PoDLE,
used/external commitments, fidelity-bond proofs and the maker's ``!ioauth`` (build and check)."""
