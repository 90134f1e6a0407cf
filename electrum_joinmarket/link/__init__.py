"""The link to jmdaemon: find/start/stop it (``daemon``) and the AMP client that holds the nick
key and signs for the daemon (``client``)."""
