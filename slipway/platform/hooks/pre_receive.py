# Slipway's pre-receive hook (the shebang line is added when it is installed).
# It sends the pushed revision of the deploy branch to Slipway as a tarball and
# prints the build's log as it arrives; a failed build rejects the push.
# Standard library only: it starts on every push.
import http.client
import os
import subprocess
import sys
import tempfile
import urllib.parse

DEPLOY_BRANCHES = ("refs/heads/main", "refs/heads/master")
ZERO = "0" * 40
STATUS_PREFIX = "\x1eslipway-status:"


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def deploy(rev, ref, base):
    url = urllib.parse.urlsplit(os.environ["SLIPWAY_HOOK_URL"])
    limit = int(os.environ.get("SLIPWAY_MAX_PUSH_BYTES", "0")) or None
    with tempfile.TemporaryFile() as archive:
        # Counted as it streams: a small push can inflate to a huge tree.
        git = subprocess.Popen(["git", "archive", "--format=tar", rev], stdout=subprocess.PIPE)
        size = 0
        while chunk := git.stdout.read(1024 * 1024):
            size += len(chunk)
            if limit is not None and size > limit:
                git.kill()
                git.wait()
                say(f" !     Push rejected: the pushed tree is larger than {limit / 2**20:g} MB "
                    "unpacked (SLIPWAY_MAX_PUSH_BYTES); the running release is untouched")
                return False
            archive.write(chunk)
        if git.wait() != 0:
            say(" !     Push rejected: git could not archive the pushed revision")
            return False
        archive.seek(0)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=3600)
        query = urllib.parse.urlencode({"commit": rev, "ref": ref, "base": base})
        conn.request(
            "POST",
            f"{url.path}?{query}",
            body=archive,
            headers={
                "Authorization": "Bearer " + os.environ["SLIPWAY_HOOK_TOKEN"],
                "Content-Type": "application/x-tar",
                "Content-Length": str(size),
            },
        )
        response = conn.getresponse()
        if response.status != 200:
            say(" !     " + response.read().decode(errors="replace").strip())
            return False
        status = None
        try:
            for raw in response:
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith(STATUS_PREFIX):
                    status = line[len(STATUS_PREFIX):]
                else:
                    say(line)
        except (OSError, http.client.HTTPException) as exc:
            say(f" !     Lost the connection to Slipway: {exc}")
        if status is None:
            say(" !     The build log ended early; `slipway builds` shows how the build ended")
        return status == "succeeded"


def main():
    ok = True
    for line in sys.stdin:
        old, new, ref = line.split()
        if ref not in DEPLOY_BRANCHES:
            say(f"-----> {ref} received; only main or master is deployed")
            continue
        if new == ZERO:
            say(" !     The deploy branch cannot be deleted")
            ok = False
            continue
        ok = deploy(new, ref, old) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
