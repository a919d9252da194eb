import re

import pytest

from orthanc_rt.dicom.uids import derive_uid, is_valid_uid, new_uid

UID = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


def test_derived_uids_are_stable_valid_and_distinct():
    uid = derive_uid("orthanc-rt", "job-1", "rtdose")
    assert uid == derive_uid("orthanc-rt", "job-1", "rtdose")
    # Fixed forever: results stored by an earlier version must be replaced, not duplicated, by a retry.
    assert derive_uid("a") == "2.25.19552746667363336653640303199415237274"
    assert UID.match(uid) and len(uid) <= 64 and is_valid_uid(uid)
    assert derive_uid("orthanc-rt", "job-2", "rtdose") != uid
    assert derive_uid("a", "bc") != derive_uid("ab", "c")  # part boundaries count


def test_derive_uid_refuses_what_would_collide_silently():
    with pytest.raises(TypeError, match="strings"):
        derive_uid("beam", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        derive_uid()


def test_new_uids_are_valid_and_fresh():
    uids = {new_uid() for _ in range(100)}
    assert len(uids) == 100
    assert all(UID.match(u) and len(u) <= 64 for u in uids)


@pytest.mark.parametrize("value", ["", "1.2.03", "1..2", "1.2.", "a.b", "1." + "2" * 63])
def test_invalid_uids_are_recognised(value):
    assert not is_valid_uid(value)
