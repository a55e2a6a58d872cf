"""The test policies (``chunkwise.policies.testing``) as families: built from flags, no checkpoint."""

from chunkwise.policies.registry import PolicyFamily, register_family

for _name, _what in (
    ("echo", "chunk = the state (+ i on action 0); the queued prefix verbatim in rows 0..N-1"),
    ("mlp", "a small torch MLP padded to --policy.model_ms per call"),
    ("expert", "the MetaWorld scripted expert on the state; the chunk holds its action"),
):
    register_family(PolicyFamily(
        name=_name,
        description=f"test policy: {_what}",
        build="chunkwise.policies.testing:make_test_policy",
        build_config="chunkwise.policies.testing:TestPolicyConfig",
    ))
