

ordersgP

ordersg