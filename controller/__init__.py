"""vxplane controller: intent in SQL, flows pushed to every host's br-int over OpenFlow 1.3."""
