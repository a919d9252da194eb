RT_ION_PLAN = "1.2.840.10008.5.1.4.1.1.481.8"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
def name_of(uid): return uid
