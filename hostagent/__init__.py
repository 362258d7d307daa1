"""vxplane host agent: plugs containers into the host's OVS br-int and reports to the controller."""
