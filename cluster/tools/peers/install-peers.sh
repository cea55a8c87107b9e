#!/bin/sh
# make bench-peers: install the peers' Debian packages when missing, with their packaged
# services kept from starting (policy-rc.d) and stopped if they run anyway: the harness starts
# its own instances, one at a time, and a packaged server would compete for the cores.
set -e
PACKAGES="redis-server nats-server rabbitmq-server"
missing=
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
if [ -n "$missing" ]; then
  echo "installing Debian's$missing (the peers of make bench-peers)"
  policy=/usr/sbin/policy-rc.d
  made=
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null && $SUDO chmod +x $policy && made=1
  fi
  status=0
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null) || status=$?
  [ -z "$made" ] || $SUDO rm -f $policy
  if [ $status != 0 ]; then
    echo "could not install$missing: install them by hand (apt-get install$missing); make bench-peers leaves out the missing ones"
  fi
fi
# stop the packaged services if something started them (systemd, or sysv init), asking only
# when one runs: the sysv scripts' stop and status run rabbitmqctl, which starts an epmd
for s in redis-server nats-server rabbitmq-server; do
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    if systemctl is-active --quiet "$s"; then
      $SUDO systemctl stop "$s" >/dev/null 2>&1 || true
      $SUDO systemctl disable "$s" >/dev/null 2>&1 || true
    fi
  elif [ -x "/etc/init.d/$s" ]; then
    case $s in rabbitmq-server) running=$(pgrep -u rabbitmq -x beam.smp || true) ;;
               *) running=$(pgrep -x "$s" || true) ;; esac
    if [ -n "$running" ]; then $SUDO "/etc/init.d/$s" stop >/dev/null 2>&1 || true; fi
  fi
done
