
notes3t:
text/plainJhéllo "world"
R
partitionkeyk