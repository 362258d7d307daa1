"""Docker's remote network and IPAM drivers ``vxplane``, served by the host agent."""
