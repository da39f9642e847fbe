"""The local lab: real hosts on this machine (systemd-nspawn, sshd, a private bridge) and a bundle
built from Debian's packages, so every deploy can be proven without a hypervisor."""
