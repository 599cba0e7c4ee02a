//! The scalar reference: one cell at a time, in program order, no threads.

use crate::cell::{CellModel, Model, Real, WithModel, MAX_PARAMS, MAX_STATE};
use crate::solve::{Cells, TimeGrid, Trajectories};
use crate::Error;

/// Forward Euler for every cell of `model`, in precision `R` (`f32` or `f64`):
/// the reference the fast paths are tested against.
pub fn solve_model<R: Real>(model: &dyn Model, grid: &TimeGrid, cells: &Cells) -> Result<Trajectories<R>, Error> {
    struct Scalar<'a, R>(&'a TimeGrid, &'a Cells, std::marker::PhantomData<R>);
    impl<R: Real> WithModel for Scalar<'_, R> {
        type Out = Trajectories<R>;
        fn call<M: CellModel>(self, m: &M) -> Trajectories<R> {
            solve::<M, R>(m, self.0, self.1)
        }
    }
    crate::cell::with_model(model, Scalar(grid, cells, std::marker::PhantomData))
}

/// Forward Euler for every cell, in precision `R` (`f32` or `f64`).
pub fn solve<M: CellModel, R: Real>(model: &M, grid: &TimeGrid, cells: &Cells) -> Trajectories<R> {
    let (n, np) = (M::N_STATE, model.info().params.len());
    let mut out = Trajectories::filled(n, grid.n_samples, cells.n, R::splat(0.0));
    let dt = R::splat(grid.dt);
    for c in 0..cells.n {
        let mut p = [R::splat(0.0); MAX_PARAMS];
        let mut x = [R::splat(0.0); MAX_STATE];
        let mut dx = [R::splat(0.0); MAX_STATE];
        for (j, col) in cells.params.iter().enumerate() {
            p[j] = R::splat(col.get(c));
        }
        for (i, col) in cells.init.iter().enumerate() {
            x[i] = R::splat(col.get(c));
        }
        for s in 0..grid.n_samples {
            if s > 0 {
                for _ in 0..grid.steps_per_sample {
                    model.rhs(&p[..np], &x[..n], &mut dx[..n]);
                    for i in 0..n {
                        x[i] = dt.mul_add(dx[i], x[i]);
                    }
                }
            }
            for i in 0..n {
                out.data[(i * grid.n_samples + s) * cells.n + c] = x[i];
            }
        }
    }
    out
}
