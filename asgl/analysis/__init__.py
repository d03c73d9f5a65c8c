"""What a trained network costs and where it can run: spike statistics, operation counts, NIR export.

The energy constants live here (no heavy import) so the CLI can show them as defaults.
"""

# 45 nm CMOS, 32-bit float (M. Horowitz, "Computing's energy problem", ISSCC 2014): add 0.9 pJ,
# multiply 3.7 pJ, so a multiply-accumulate costs 4.6 pJ
ENERGY_AC_PJ = 0.9
ENERGY_MAC_PJ = 4.6
ENERGY_SOURCE = "45 nm, Horowitz ISSCC 2014"
