package harness

// initScript is the main process of every node (run under docker-init, which
// reaps orphans). It starts the node's own dockerd when the image has one,
// writes readyFile ("ok" or "error: ...") and then waits forever. It never
// starts kontena. /run is a tmpfs, so every (re)start begins clean.
const initScript = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ready=/run/kontena-node.ready
rm -f $ready
mkdir -p /var/log /var/lib/kontena /tmp
log() { echo "$(date '+%F %T') kontena-node-init: $*" >>/var/log/node-init.log; }

dead() { # pid: true when the process is gone or a zombie
	case "$(cat /proc/$1/stat 2>/dev/null)" in ""|*") Z "*) return 0 ;; esac
	return 1
}

start_dockerd() {
	# Nest the inner engine's cgroups under this container's own cgroup, so
	# that docker pause/kill of the node also covers its inner containers.
	cg=$(sed -n 's/^[0-9]*:freezer://p' /proc/self/cgroup)
	[ -n "$cg" ] || cg=$(sed -n 's/^0:://p' /proc/self/cgroup)
	driver=$KONTENA_IT_STORAGE_DRIVER
	if [ -z "$driver" ]; then
		if [ -d /var/lib/docker/overlay2 ]; then driver=overlay2
		elif [ -d /var/lib/docker/vfs ]; then driver=vfs
		else
			t=/var/lib/docker/.overlay-probe
			mkdir -p $t/l $t/u $t/w $t/m
			if mount -t overlay overlay -o lowerdir=$t/l,upperdir=$t/u,workdir=$t/w $t/m 2>/dev/null; then
				umount $t/m
				driver=overlay2
			else
				driver=vfs
			fi
			rm -rf $t
		fi
	fi
	set -- --storage-driver=$driver
	case "$cg" in ""|/) ;; *) set -- "$@" --cgroup-parent="$cg/docker" ;; esac
	log "starting dockerd $* $KONTENA_IT_DOCKERD_ARGS"
	dockerd "$@" $KONTENA_IT_DOCKERD_ARGS >>/var/log/dockerd.log 2>&1 &
	dpid=$!
	i=0
	until docker info >/dev/null 2>&1; do
		i=$((i+1))
		if [ $i -gt 600 ] || dead $dpid; then
			log "dockerd did not start"
			echo "error: dockerd did not start; /var/log/dockerd.log: $(tail -n 5 /var/log/dockerd.log)" >$ready
			return 1
		fi
		sleep 0.1
	done
	# dockerd sets FORWARD to DROP: let bridged traffic through.
	if ! iptables -I DOCKER-USER -j ACCEPT 2>>/var/log/node-init.log; then
		echo "error: iptables -I DOCKER-USER -j ACCEPT failed" >$ready
		return 1
	fi
	log "dockerd ready ($driver)"
}

ok=1
if [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ]; then
	start_dockerd || ok=
fi
[ -n "$ok" ] && echo ok >$ready
trap 'exit 0' TERM INT
while :; do
	sleep 3600 &
	wait $!
done
`

const readyFile = "/run/kontena-node.ready"
