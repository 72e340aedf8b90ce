"""A new WireGuard key for this side of a link, agreed with the peer.

The new public key goes to the peer in a PATCH /update signed with the
link's current key; the peer answers first and then applies it, so the
answer still travels over the link as it was. This side then writes its new
key and both derived secrets change with it (linkkeys), on both sides.

The new private key is kept in /var/lib/wgmesh/rekey/NAME.key (0600) until
the link file has it: if the answer is lost after the peer applied the key,
running rekey again proves the new key instead of the old one and finishes.
"""

from dataclasses import replace

from . import join, keys, linkfile, linkkeys, log
from .errors import RemoteError, WgmeshError
from .linkfile import Link, read_secret
from .node import Node
from .tomlio import write_atomic


def _pending_path(node: Node, name: str):
    return node.paths.rekey_dir / f"{name}.key"


def rekey(node: Node, name: str) -> Link:
    if not linkfile.exists(node.paths, name):
        raise WgmeshError(f"there is no link named {name!r} (see 'wgmesh status')")
    link = linkfile.load(node.paths, name)
    old_private = read_secret(node.paths.link_key(name))
    pending = _pending_path(node, name)
    resuming = pending.exists()
    if resuming:
        new_private = read_secret(pending)
    else:
        new_private = keys.generate_private_key()
        pending.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(pending, (new_private + "\n").encode(), linkfile.SECRET_MODE)
    new_public = keys.public_key(new_private)
    fields = {"id": node.node_id, "family": link.family, "public_key": new_public}
    signers = [old_private] + ([new_private] if resuming else [])
    errors = []
    for url in join.peer_api_urls(node, link):
        for signer in signers:
            try:
                join.signed_request(url, "/update", fields, linkkeys.signing_key(signer, link.peer_public_key),
                                    method="PATCH")
                return _apply(node, link, new_private, new_public)
            except RemoteError as error:
                errors.append(str(error))
                if error.status is None:
                    break  # unreachable at this URL: try the next one
    raise WgmeshError(f"node {link.peer_id} did not take the new key: {errors[-1]}"
                      + ("; run 'wgmesh rekey' again to finish" if not resuming else ""))


def _apply(node: Node, link: Link, new_private: str, new_public: str) -> Link:
    updated = replace(link, public_key=new_public)
    linkfile.save(node.paths, updated, new_private, linkkeys.preshared_key(new_private, link.peer_public_key))
    _pending_path(node, link.name).unlink(missing_ok=True)
    node.supervisor.reload_link(link.name)
    log.event("link-rekeyed", f"link {link.name}: this side has a new key, node {link.peer_id} took it",
              link=link.name, peer=link.peer_id)
    return updated
