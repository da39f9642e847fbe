"""Facts as the facts command prints them on two kinds of hosts (for parser and preflight tests)."""

DEBIAN = """os_id=debian
os_version=12
os_like=
arch=x86_64
hostname=k8s-1
cgroup_fs=cgroup2fs
swap=
fstab_swap=
ntp_synchronized=yes
time=1700000000
listening=0.0.0.0:22|users:(("sshd",pid=90,fd=3)) 192.168.10.11:2379|users:(("etcd",pid=7,fd=8))
etcd_member=yes
selinux=
firewalld=inactive
package_manager=apt-get
systemd=systemd
"""


CENTOS7 = """os_id=centos
os_version=7
os_like=rhel fedora
arch=x86_64
hostname=node7
cgroup_fs=tmpfs
swap=/dev/dm-1
fstab_swap=/dev/mapper/centos-swap
ntp_synchronized=no
time=1700000010
listening=*:6443|users:(("nginx",pid=1,fd=3))
etcd_member=no
selinux=Enforcing
firewalld=active
package_manager=yum
systemd=systemd
"""
