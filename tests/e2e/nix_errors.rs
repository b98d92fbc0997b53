//! Mistakes in Nix expressions are caught at evaluation, with a message that
//! names the argument and says what is expected.

use crate::nix;

struct Mistake {
    expr: &'static str,
    message: &'static str,
}

const MISTAKES: &[Mistake] = &[
    Mistake {
        expr: r#"t.buildImage { name = "x"; config.Healthcheck = { }; }"#,
        message: "config: unknown key `Healthcheck`",
    },
    Mistake {
        expr: r#"t.buildImage { name = "x"; config.entrypoint = "${t.pkgs.hello}/bin/hello"; }"#,
        message: "config.Entrypoint must be a list of strings",
    },
    Mistake {
        expr: r#"t.buildImage { name = "x"; config = { cmd = [ "a" ]; Cmd = [ "b" ]; }; }"#,
        message: "the key Cmd is given more than once",
    },
    Mistake {
        expr: r#"t.buildImage { name = "x"; isolatedDeps = [ t.pkgs.hello ]; }"#,
        message: "every element of `isolatedDeps` must be a buildLayer result",
    },
    Mistake {
        expr: r#"t.buildImage { name = "x"; fromImage = "alpine.json"; }"#,
        message: "`fromImage` must be a pullImage or pullImageFromManifest result",
    },
    Mistake {
        expr: r#"t.buildLayer { deps = [ t.pkgs.hello ]; maxLayers = -1; }"#,
        message: "`maxLayers` must be a non-negative integer",
    },
    Mistake {
        expr: r#"t.buildLayer { deps = [ t.pkgs.hello ]; compression = "xz"; }"#,
        message: "`compression` must be \"gzip\", \"zstd\" or \"none\"",
    },
    Mistake {
        expr: r#"t.buildLayer { deps = [ t.pkgs.hello ]; perms = [ { path = t.pkgs.hello; regex = ".*"; mode = "rwx"; } ]; }"#,
        message: "is not an octal mode",
    },
    Mistake {
        expr: r#"t.buildImage { name = 42; }"#,
        message: "`name` must be a non-empty string",
    },
    Mistake {
        expr: r#"t.buildImage { name = "x"; tags = "latest"; }"#,
        message: "unexpected argument 'tags'",
    },
];

#[test]
fn mistakes_are_caught_at_evaluation() {
    for mistake in MISTAKES {
        nix::assert_eval_fails_with(mistake.expr, mistake.message);
    }
}
