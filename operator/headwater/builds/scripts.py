# ruff: noqa: E501, S608 - shell programs keep their own line lengths; no SQL here
"""The shell programs the build pod's containers run, and what their exit codes mean.

They run in the builder image (Debian: sh, coreutils, sed, awk, git, tar,
buildah), are configured only through environment variables and arguments
the Job renderer sets (never by interpolating user input into the script),
and report back through the container termination message:

- on success, a one-line JSON document (commit, digest, stage timings);
- on failure, nothing: the container's ``terminationMessagePolicy`` is
  ``FallbackToLogsOnError``, so the kubelet puts the last lines of the log
  there, which becomes the Build's ``logSnippet``, and the exit code names
  the reason.
"""

from __future__ import annotations

from types import MappingProxyType

from headwater.builds.provenance import MAX_IMAGES, MAX_REFERENCE

# Exit codes the scripts use, and the Build reason each one means.
EXIT_FETCH_SOURCE = 10
EXIT_CONTEXT_DIR = 11
EXIT_MANAGE_DOCKERFILE = 12
EXIT_BUILD = 20
EXIT_POST_COMMIT = 30
EXIT_PUSH = 40

EXIT_REASONS = MappingProxyType(
    {
        EXIT_FETCH_SOURCE: "FetchSourceFailed",
        EXIT_CONTEXT_DIR: "InvalidContextDirectory",
        EXIT_MANAGE_DOCKERFILE: "ManageDockerfileFailed",
        EXIT_BUILD: "DockerBuildFailed",
        EXIT_POST_COMMIT: "PostCommitHookFailed",
        EXIT_PUSH: "PushImageToRegistryFailed",
    }
)

# kaniko logs each instruction it runs: this one (in the post-commit hook's stage,
# never the image pushed) tells a failing hook from a failing build.
KANIKO_POST_COMMIT_MARKER = "io.headwater.post-commit=running"
# kaniko's words for a failed push (or its check of push access before building).
KANIKO_PUSH_ERRORS = ("error pushing image", "checking push permission")

WORKSPACE = "/workspace"
SOURCE_DIR = f"{WORKSPACE}/source"
S2I_DIR = f"{WORKSPACE}/s2i"
UPLOAD_DONE = f"{WORKSPACE}/upload.done"
LABELS_FILE = f"{WORKSPACE}/labels"
SECRETS_DIR = "/var/run/secrets/headwater"
SOURCE_SECRET_DIR = f"{SECRETS_DIR}/source"
PUSH_SECRET_DIR = f"{SECRETS_DIR}/push"
PULL_SECRET_DIR = f"{SECRETS_DIR}/pull"
INPUTS_DIR = "/var/run/headwater/inputs"

# Commands `headwater start-build --from-*` runs in the waiting fetch-source
# container through the exec API, reading the upload from stdin.
UPLOAD_ARCHIVE_COMMAND = (
    "sh",
    "-c",
    f'tar -xzf - -C {SOURCE_DIR} --no-same-owner && touch {UPLOAD_DONE} && echo "$(du -sb '
    f'{SOURCE_DIR} | cut -f1) bytes unpacked"',
)
UPLOAD_TAR_COMMAND = (
    "sh",
    "-c",
    f"tar -xf - -C {SOURCE_DIR} --no-same-owner && touch {UPLOAD_DONE}",
)


def upload_file_command(name: str) -> tuple[str, ...]:
    """Save stdin as ``name`` in the source directory (``--from-file``, ``binary.asFile``)."""
    return ("sh", "-c", f'cat > "{SOURCE_DIR}/$0" && touch {UPLOAD_DONE}', name)


_COMMON = r"""
set -eu
fail() { code=$1; shift; printf 'error: %s\n' "$*" >&2; exit "$code"; }
ms() { date +%s%3N; }
# A string as the inside of a JSON string: escape \ and ", drop control characters.
json() { printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
"""

# The awk programs that edit a Dockerfile read it with this scanner, so they agree
# on what an instruction is. scan() tells where the current line stands: "body"
# inside a heredoc (up to its closing delimiter), "more" on a continuation of the
# line before (after a trailing backslash), else "start", the first line of an
# instruction. It leaves cont set when the line goes on into the next one.
# Continuation lines and heredoc bodies are not instructions, even when they
# start with "from" (a Python import in a RUN heredoc). No single quotes: the
# program is a single-quoted shell word.
_DOCKERFILE_SCAN = r"""function scan(   t) {
        if (delim != "") { t = $0; sub(/^[ \t]+/, "", t); if (t == delim) delim = ""; return "body" }
        inside = cont; cont = ($0 ~ /\\[ \t]*$/)
        if (!inside && match($0, /<<-?["\047]?[A-Za-z_][A-Za-z0-9_]*/)) {
          delim = substr($0, RSTART, RLENGTH); sub(/^<<-?["\047]?/, "", delim) }
        return inside ? "more" : "start"
      }"""

FETCH_SCRIPT = (
    (
        _COMMON
        + r"""
W=/workspace; SRC=$W/source; SECRET=/var/run/secrets/headwater/source
started=$(ms)
mkdir -p "$SRC" "$HOME"
commit=""; author_name=""; author_email=""; committer_name=""; committer_email=""; subject=""
case "${HW_SOURCE_TYPE:-None}" in
Git)
  export GIT_TERMINAL_PROMPT=0
  if [ -f "$SECRET/ssh-privatekey" ]; then
    install -m 600 "$SECRET/ssh-privatekey" /tmp/ssh-key
    if [ -f "$SECRET/known_hosts" ]; then
      export GIT_SSH_COMMAND="ssh -i /tmp/ssh-key -o IdentitiesOnly=yes -o UserKnownHostsFile=$SECRET/known_hosts -o StrictHostKeyChecking=yes"
    else
      # As OpenShift does without a known_hosts key: accept the host key.
      export GIT_SSH_COMMAND="ssh -i /tmp/ssh-key -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"
    fi
  fi
  if [ -f "$SECRET/password" ] || [ -f "$SECRET/username" ]; then
    # A credential helper reads the files when git asks: the secret is never
    # in an argument, an environment variable or the log.
    git config --global credential.helper '!f() { test "$1" = get || exit 0; d=/var/run/secrets/headwater/source; if [ -f $d/username ]; then echo "username=$(cat $d/username)"; else echo username=headwater; fi; [ -f $d/password ] && echo "password=$(cat $d/password)"; }; f'
  fi
  if [ -f "$SECRET/ca.crt" ]; then export GIT_SSL_CAINFO="$SECRET/ca.crt"; fi
  if [ -f "$SECRET/.gitconfig" ]; then git config --global include.path "$SECRET/.gitconfig"; fi
  echo "Cloning \"$HW_GIT_URI\" ..."
  if [ -n "${HW_GIT_COMMIT:-}" ]; then
    git clone -q --no-checkout -- "$HW_GIT_URI" "$SRC" || fail 10 "could not clone $HW_GIT_URI"
    git -C "$SRC" checkout -q "$HW_GIT_COMMIT" || fail 10 "commit $HW_GIT_COMMIT is not in $HW_GIT_URI"
  elif [ -n "${HW_GIT_REF:-}" ]; then
    if ! git clone -q --depth 1 --branch "$HW_GIT_REF" -- "$HW_GIT_URI" "$SRC" 2>/tmp/clone.err; then
      # Not a branch or tag: a commit, which needs the whole history.
      rm -rf "$SRC"; mkdir -p "$SRC"
      if ! git clone -q --no-checkout -- "$HW_GIT_URI" "$SRC" || ! git -C "$SRC" checkout -q "$HW_GIT_REF"; then
        cat /tmp/clone.err >&2
        fail 10 "could not check out $HW_GIT_REF from $HW_GIT_URI"
      fi
    fi
  else
    git clone -q --depth 1 -- "$HW_GIT_URI" "$SRC" || fail 10 "could not clone $HW_GIT_URI"
  fi
  if [ -f "$SRC/.gitmodules" ]; then
    git -C "$SRC" submodule update -q --init --recursive || fail 10 "could not fetch submodules"
  fi
  commit=$(git -C "$SRC" rev-parse HEAD)
  author_name=$(git -C "$SRC" log -1 --format=%an); author_email=$(git -C "$SRC" log -1 --format=%ae)
  committer_name=$(git -C "$SRC" log -1 --format=%cn); committer_email=$(git -C "$SRC" log -1 --format=%ce)
  subject=$(git -C "$SRC" log -1 --format=%s | head -c 512)
  echo "Commit: $commit ($subject)"
  ;;
Binary)
  echo "Waiting for binary input (headwater start-build --from-dir|--from-file|--from-archive) ..."
  waited=0
  while [ ! -e "$W/upload.done" ]; do
    sleep 1; waited=$((waited + 1))
    [ "$waited" -lt "${HW_UPLOAD_TIMEOUT:-900}" ] || fail 10 "no binary input within ${HW_UPLOAD_TIMEOUT:-900}s"
  done
  echo "Received binary input"
  ;;
esac
CTX=$SRC${HW_CONTEXT_DIR:+/$HW_CONTEXT_DIR}
[ -d "$CTX" ] || fail 11 "context directory ${HW_CONTEXT_DIR:-} does not exist in the source"
if [ -n "${HW_DOCKERFILE+x}" ]; then
  mkdir -p "$(dirname "$CTX/$HW_DOCKERFILE_PATH")"
  printf '%s\n' "$HW_DOCKERFILE" > "$CTX/$HW_DOCKERFILE_PATH"
fi
# Secrets and ConfigMaps into the context: each mounted volume's keys, not the
# kubelet's ..data bookkeeping.
i=0
while eval "spec=\${HW_INPUT_$i:-}"; [ -n "$spec" ]; do
  from=${spec%%|*}; to=$CTX/${spec#*|}
  mkdir -p "$to"
  find "$from" -mindepth 1 -maxdepth 1 ! -name '..*' -exec cp -rL {} "$to/" \;
  i=$((i + 1))
done
if [ "${HW_STRATEGY:-Docker}" = Docker ]; then
  DF=$CTX/${HW_DOCKERFILE_PATH:-Dockerfile}
  [ -f "$DF" ] || fail 12 "no Dockerfile at ${HW_CONTEXT_DIR:+$HW_CONTEXT_DIR/}${HW_DOCKERFILE_PATH:-Dockerfile}"
  if [ -n "${HW_FROM:-}" ]; then
    # dockerStrategy.from replaces the image of the last FROM (OpenShift's rule).
    awk -v img="$HW_FROM" '__DOCKERFILE_SCAN__
      { line[NR] = $0 }
      scan() == "start" && toupper($1) == "FROM" { last = NR }
      END { for (i = 1; i <= NR; i++) {
        if (i != last) { print line[i]; continue }
        n = split(line[i], f, " "); out = f[1]; done = 0
        for (j = 2; j <= n; j++) {
          if (!done && f[j] !~ /^--/) { out = out " " img; done = 1 } else { out = out " " f[j] }
        }
        print out } }' "$DF" > /tmp/Dockerfile && cat /tmp/Dockerfile > "$DF" || fail 12 "could not set the FROM image"
  fi
  if [ -n "${HW_ENV_LINES:-}" ]; then
    # dockerStrategy.env goes after every FROM, as OpenShift puts it, so RUN steps
    # of every stage see it and the image keeps it. Read from the environment:
    # awk -v would interpret the backslashes of the quoted values.
    awk '__DOCKERFILE_SCAN__
      { print; at = scan() }
      at == "start" && toupper($1) == "FROM" { pending = 1 }
      at != "body" && pending && !cont { print ENVIRON["HW_ENV_LINES"]; pending = 0 }' "$DF" > /tmp/Dockerfile \
      && cat /tmp/Dockerfile > "$DF" || fail 12 "could not add ENV to the Dockerfile"
  fi
fi
if [ -n "${HW_S2I_DOCKERFILE:-}" ]; then
  rm -rf "$W/s2i"; mkdir -p "$W/s2i/upload"
  cp -a "$CTX" "$W/s2i/upload/src"
  printf '%s\n' "$HW_S2I_DOCKERFILE" > "$W/s2i/Dockerfile"
  (cd "$W/s2i" && eval "$HW_S2I_ENVIRONMENT_SCRIPT") || fail 12 "invalid .s2i/environment"
fi
: > "$W/labels"
if [ -n "$commit" ]; then
  {
    echo "io.openshift.build.commit.id=$commit"
    echo "io.openshift.build.commit.author=$author_name <$author_email>"
    echo "io.openshift.build.commit.message=$subject"
    [ -z "${HW_GIT_REF:-}" ] || echo "io.openshift.build.commit.ref=$HW_GIT_REF"
    echo "io.openshift.build.source-location=$HW_GIT_URI"
    [ -z "${HW_CONTEXT_DIR:-}" ] || echo "io.openshift.build.source-context-dir=$HW_CONTEXT_DIR"
  } >> "$W/labels"
fi
if [ -n "${HW_APPEND_LABELS:-}" ] && [ -s "$W/labels" ]; then
  target=${DF:-}; [ -z "${HW_S2I_DOCKERFILE:-}" ] || target=$W/s2i/Dockerfile
  # Each value as a double-quoted Dockerfile word (\, " and $ escaped), once per
  # time kaniko resolves it (HW_LABEL_RESOLUTIONS, see job.py).
  quote() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\$/\\$/g' -e 's/^\([^=]*\)=\(.*\)$/\1="\2"/'; }
  if [ "${HW_LABEL_RESOLUTIONS:-1}" = 2 ]; then quote < "$W/labels" | quote; else quote < "$W/labels"; fi \
    | sed -e 's/^\([^=]*\)=/LABEL "\1"=/' >> "$target"
fi
if [ -n "${HW_POST_COMMIT_RUN:-}" ]; then
  # kaniko (no second container to run the image in): the hook is a RUN step of a
  # stage on top of the last one, then the last stage again is the image pushed.
  # kaniko builds every stage in order, so a failing hook fails the build first.
  # A value new to each build, declared in the hook's stage: it is part of the
  # hook step's layer cache key, so a cached layer never stands in for the hook.
  HW_POST_COMMIT_ID=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "$(ms)-$$")
  export HW_POST_COMMIT_ID
  target=${DF:-}; [ -z "${HW_S2I_DOCKERFILE:-}" ] || target=$W/s2i/Dockerfile
  awk '__DOCKERFILE_SCAN__
    { line[NR] = $0 }
    scan() == "start" && toupper($1) == "FROM" { last = NR }
    END { for (i = 1; i <= NR; i++) {
      if (i != last) { print line[i]; continue }
      n = split(line[i], f, " ")
      if (n >= 3 && toupper(f[n - 1]) == "AS") { stage = f[n]; print line[i] }
      else { stage = "headwater-built"; print line[i] " AS " stage }
    }
    print ""
    print "FROM " stage " AS headwater-post-commit"
    print "LABEL io.headwater.post-commit=running"
    print "ARG HEADWATER_POST_COMMIT_ID=" ENVIRON["HW_POST_COMMIT_ID"]
    print "RUN " ENVIRON["HW_POST_COMMIT_RUN"]
    print "FROM " stage }' "$target" > /tmp/Dockerfile && cat /tmp/Dockerfile > "$target" \
    || fail 12 "could not add the post-commit hook to the Dockerfile"
fi
# The images every stage of the final Dockerfile starts FROM (provenance), reported
# here, before any step of the tenant's build runs, in this container's own message.
# "last": the base of the image pushed (a stage name followed to its image).
froms=""; from_capped=false; last_from=""
final_df=${DF:-}; [ -z "${HW_S2I_DOCKERFILE:-}" ] || final_df=$W/s2i/Dockerfile
if [ -n "$final_df" ] && [ -f "$final_df" ]; then
  awk '__DOCKERFILE_SCAN__
    scan() == "start" && toupper($1) == "FROM" {
      img = ""; alias = ""
      for (j = 2; j <= NF; j++) {
        if ($j ~ /^--/) continue
        img = $j; if (toupper($(j + 1)) == "AS") alias = tolower($(j + 2)); break
      }
      if (img == "") next
      known = (tolower(img) in stage); base = known ? stage[tolower(img)] : img
      if (alias != "") stage[alias] = base
      last = base
      if (known || seen[img]++) next
      if (length(img) > __MAX_REFERENCE__) print "C"; else print "F " img
    }
    END { if (length(last) <= __MAX_REFERENCE__) print "L " last }' "$final_df" > /tmp/froms || true
  n=0
  while IFS= read -r line; do
    case "$line" in
    "F "*) if [ "$n" -lt __MAX_IMAGES__ ]; then froms="$froms${froms:+,}\"$(json "${line#F }")\""; n=$((n + 1)); else from_capped=true; fi ;;
    "L "*) last_from=${line#L } ;;
    C) from_capped=true ;;
    esac
  done < /tmp/froms
fi
printf '{"commit":"%s","author":{"name":"%s","email":"%s"},"committer":{"name":"%s","email":"%s"},"message":"%s","ms":%s,"from":[%s],"fromCapped":%s,"lastFrom":"%s"}' \
  "$(json "$commit")" "$(json "$author_name")" "$(json "$author_email")" \
  "$(json "$committer_name")" "$(json "$committer_email")" "$(json "$subject")" \
  "$(( $(ms) - started ))" "$froms" "$from_capped" "$(json "$last_from")" > /dev/termination-log
"""
    )
    .replace("__DOCKERFILE_SCAN__", _DOCKERFILE_SCAN)
    .replace("__MAX_IMAGES__", str(MAX_IMAGES))
    .replace("__MAX_REFERENCE__", str(MAX_REFERENCE))
)

BUILDAH_SCRIPT = (
    (
        _COMMON
        + r"""
# "$@": the buildah bud options. The post-commit command comes as
# HW_POST_COMMIT_ARG_0 .. HW_POST_COMMIT_ARG_<HW_POST_COMMIT_ARGC - 1>.
if [ -n "${HW_INSECURE_REGISTRIES:-}" ]; then
  : > /tmp/registries.conf
  for r in $HW_INSECURE_REGISTRIES; do
    printf '[[registry]]\nlocation = "%s"\ninsecure = true\n\n' "$r" >> /tmp/registries.conf
  done
  export CONTAINERS_REGISTRIES_CONF=/tmp/registries.conf
fi
authfile() {
  if [ -f "$1/.dockerconfigjson" ]; then echo "$1/.dockerconfigjson"
  elif [ -f "$1/.dockercfg" ]; then printf '{"auths":%s}' "$(cat "$1/.dockercfg")" > "/tmp/$2.json"; echo "/tmp/$2.json"
  fi
}
pull_auth=$(authfile /var/run/secrets/headwater/pull pull)
push_auth=$(authfile /var/run/secrets/headwater/push push)
image=${HW_OUTPUT:-localhost/headwater-build:latest}
bud_auth=$pull_auth
if [ -n "${HW_CACHE:-}" ] && [ -n "$push_auth" ]; then
  # The layer cache is in the output's registry: buildah bud pushes to it with the
  # push secret. bud takes one auth file: the push secret's entries, then the pull
  # secret's for registries the push secret does not name.
  if [ -n "$pull_auth" ]; then
    perl -MJSON::PP -e 'my %all; for my $f (@ARGV) { open my $h, "<", $f or die "$f: $!"; local $/;
      my $auths = (decode_json(<$h>) || {})->{auths} || {}; $all{$_} //= $auths->{$_} for keys %$auths }
      print encode_json({auths => \%all})' "$push_auth" "$pull_auth" > /tmp/bud-auth.json \
      || fail 20 "could not read the push and pull secrets"
    bud_auth=/tmp/bud-auth.json
  else
    bud_auth=$push_auth
  fi
fi
[ -n "$bud_auth" ] && set -- --authfile "$bud_auth" "$@"
while IFS= read -r label; do
  [ -n "$label" ] && set -- "$@" --label "$label"
done < /workspace/labels

t_build=$(ms)
echo "Building $HW_CONTEXT ..."
{ rc=0; buildah bud "$@" -t "$image" "$HW_CONTEXT" 2>&1 || rc=$?; echo "$rc" > /tmp/bud.rc; } | tee /tmp/bud.log
rc=$(cat /tmp/bud.rc)
if [ "$rc" -ne 0 ] && [ -n "${HW_CACHE:-}" ] && grep -q 'failed pushing cache to' /tmp/bud.log; then
  # A cache that cannot be written never fails a build: again without --cache-to
  # (the steps built so far are in local storage: --layers reuses them).
  echo "warning: could not write the layer cache $HW_CACHE; building without writing it"
  n=$#; skip=0
  for arg in "$@"; do
    if [ "$skip" = 1 ]; then skip=0
    elif [ "$arg" = --cache-to ]; then skip=1
    else set -- "$@" "$arg"
    fi
  done
  shift "$n"
  rc=0; buildah bud "$@" -t "$image" "$HW_CONTEXT" || rc=$?
fi
[ "$rc" -eq 0 ] || fail 20 "the image build failed"
d_build=$(( $(ms) - t_build ))
# The images buildah pulled for the build (every stage's base), with the digests
# it pulled, for provenance; RUN steps ran in their own namespaces and cannot
# reach this container's termination message.
pulled=""; pulled_capped=false; n=0
buildah images --format '{{.Name}}:{{.Tag}}@{{.Digest}}' > /tmp/pulled 2>/dev/null || true
while IFS= read -r line; do
  case "$line" in "<none>"*|"$image@"*|*"@") continue ;; esac
  line=$(printf '%s' "$line" | sed 's/:<none>@/@/')
  if [ "${#line}" -gt __MAX_REFERENCE__ ] || [ "$n" -ge __MAX_IMAGES__ ]; then pulled_capped=true; continue; fi
  pulled="$pulled${pulled:+,}\"$(json "$line")\""; n=$((n + 1))
done < /tmp/pulled

t_hook=$(ms); d_hook=0
if [ "${HW_POST_COMMIT_ARGC:-0}" -gt 0 ]; then
  echo "Running the post-commit hook ..."
  ctr=$(buildah from --pull=never "$image") || fail 30 "could not start the built image"
  rc=0
  set --; i=0
  while [ "$i" -lt "$HW_POST_COMMIT_ARGC" ]; do eval "set -- \"\$@\" \"\$HW_POST_COMMIT_ARG_$i\""; i=$((i + 1)); done
  buildah run --network host "$ctr" -- "$@" || rc=$?
  buildah rm "$ctr" > /dev/null 2>&1 || true
  [ "$rc" -eq 0 ] || fail 30 "the post-commit hook failed (exit code $rc)"
  d_hook=$(( $(ms) - t_hook ))
fi

digest=""; t_push=$(ms); d_push=0
if [ -n "${HW_OUTPUT:-}" ]; then
  echo "Pushing $HW_OUTPUT ..."
  set --; [ -n "$push_auth" ] && set -- --authfile "$push_auth"
  buildah push "$@" --digestfile /tmp/digest "$image" "docker://$HW_OUTPUT" || fail 40 "could not push $HW_OUTPUT"
  digest=$(cat /tmp/digest)
  d_push=$(( $(ms) - t_push ))
  echo "Pushed $HW_OUTPUT@$digest"
fi
printf '{"digest":"%s","stages":[{"name":"Build","start":%s,"ms":%s},{"name":"PostCommit","start":%s,"ms":%s},{"name":"PushImage","start":%s,"ms":%s}],"pulled":[%s],"pulledCapped":%s}' \
  "$digest" "$t_build" "$d_build" "$t_hook" "$d_hook" "$t_push" "$d_push" "$pulled" "$pulled_capped" > /dev/termination-log
"""
    )
    .replace("__MAX_IMAGES__", str(MAX_IMAGES))
    .replace("__MAX_REFERENCE__", str(MAX_REFERENCE))
)
